"""The emulator's stop routine leaves no process behind, even one that ignores SIGTERM."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.contract.emulator import stop_process_group

# Like gcloud → wrapper → java: a parent that starts a child and waits on it.
TREE = """
{child} &
echo $! > {pidfile}
wait
"""


def start_tree(tmp_path: Path, child: str) -> tuple[subprocess.Popen[bytes], int]:
    pidfile = tmp_path / "child.pid"
    proc = subprocess.Popen(["bash", "-c", TREE.format(child=child, pidfile=pidfile)], start_new_session=True)
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.01)
    return proc, int(pidfile.read_text())


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_polite_tree_is_terminated(tmp_path: Path) -> None:
    proc, child = start_tree(tmp_path, "sleep 300")
    assert stop_process_group(proc, grace_s=5.0) == "terminated"
    assert proc.returncode is not None and not alive(child)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    trapped = tmp_path / "trapped"  # written once the child ignores SIGTERM: signalled before, it would just die
    proc, child = start_tree(tmp_path, f"bash -c 'trap \"\" TERM; touch {trapped}; while :; do sleep 0.05; done'")
    deadline = time.monotonic() + 10
    while not trapped.exists():
        assert time.monotonic() < deadline, "the child never set its trap"
        time.sleep(0.01)
    started = time.monotonic()
    assert stop_process_group(proc, grace_s=0.5) == "killed"
    assert time.monotonic() - started >= 0.5
    assert not alive(child)
    assert proc.returncode is not None
