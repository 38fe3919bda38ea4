"""A box whose supervised model server cannot come up is stopped and another box of its pool serves the job:
the whole local stack, a pool of two local boxes, each agent supervising its model server.

The server command is a wrapper: its first run anywhere (a marker file decides) prints a CUDA out-of-memory
line and hangs, as a server on a too-small GPU does; later runs print a download line, then become the
Ollama stand-in. So local-1 fails, its agent announces it, the control plane stops local-1 (without
waiting for any idle limit), keeps it out of the next start, and local-2 runs the job.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from shared.assembly import build_store
from shared.boxes.providers.local import process_alive
from shared.tools.devstack import free_port
from tests.fleet.conftest import StackFactory, box_pid, client_for
from tests.servers import MODEL, wait_until

WRAPPER = """
import os, pathlib, sys, time
marker, port = pathlib.Path(sys.argv[1]), sys.argv[2]
if not marker.exists():
    marker.write_text("failed once")
    print("ggml_cuda_init: CUDA out of memory (tried to allocate 6.2 GiB)", flush=True)
    time.sleep(600)  # a hung server: only its supervisor ends it
print("Downloading tiny model  43%", flush=True)
time.sleep(1.5)
os.execv(sys.executable, [sys.executable, "-m", "shared.fakes.ollama", "--port", port, "--models", sys.argv[3]])
"""


def test_a_box_that_cannot_come_up_is_stopped_and_another_serves_the_job(
    fleet_stack: StackFactory, tmp_path: Path
) -> None:
    script = tmp_path / "server.py"
    script.write_text(WRAPPER)
    port = free_port()
    command = shlex.join([sys.executable, str(script), str(tmp_path / "marker"), str(port), MODEL])
    stack = fleet_stack(
        max_boxes=2,
        jobs_per_box=1,
        ollama_url=f"http://127.0.0.1:{port}",
        extra_env={"GPUQ_AGENT_SERVER_COMMAND": command, "GPUQ_AGENT_SERVER_ON_LOAD": "listening on"},
    )
    client = client_for(stack)
    try:
        job = client.submit({"model": MODEL, "prompt": "where does this run?"})
        reasons: list[str] = []
        deadline = time.monotonic() + 90
        while (current := client.get(job["id"]))["status"] not in ("succeeded", "failed", "expired"):
            assert time.monotonic() < deadline, current
            if current["status_reason"] not in reasons:
                reasons.append(current["status_reason"])
            time.sleep(0.05)  # another process's state: polled, as a client would
    finally:
        client.close()
    assert current["status"] == "succeeded" and current["instance_id"] == "local-2", current
    assert "loading_model: Downloading tiny model 43%" in reasons, reasons  # what the new box was doing

    record = build_store(stack.settings).get_record("instance", "local-1") or {}
    assert record["state"] == "stopped" and record["failures"] == 1
    assert record["failed_reason"] == "ggml_cuda_init: CUDA out of memory (tried to allocate 6.2 GiB)"
    failed_agent = box_pid(stack, "local-1")
    wait_until(lambda: not process_alive(failed_agent, None), 20, "local-1's agent (and its hung server) gone")
    assert ("local-1", "stopped") in {(box, state) for box, state, _ in stack.boxes()}
