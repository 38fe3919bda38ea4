"""The real Pub/Sub emulator (``gcloud beta emulators pubsub start``) as a test server.

Started once per test session on a free port (as the Firestore emulator is, ``tests/contract/emulator.py``),
stopped with SIGTERM to its whole process group, SIGKILL after a grace period. Tests make their own topic
and subscription (unique names), so nothing needs resetting between them. Clients reach it through
``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.contract.emulator import free_port, stop_process_group

__all__ = ["PubSubEmulator", "pubsub_missing_reason", "require_pubsub_emulator"]


def pubsub_missing_reason() -> str | None:
    """Why the emulator cannot run here, or ``None`` when it can."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "gcloud is not on PATH: install the Google Cloud SDK with the pubsub-emulator component"
    sdk_root = Path(gcloud).resolve().parent.parent
    if not (sdk_root / "platform" / "pubsub-emulator").is_dir():
        return (
            f"the Pub/Sub emulator is not installed in {sdk_root} "
            "(gcloud components install pubsub-emulator, or apt google-cloud-cli-pubsub-emulator)"
        )
    if shutil.which("java") is None:
        return "java is not on PATH: the Pub/Sub emulator needs a Java runtime"
    return None


def require_pubsub_emulator() -> None:
    """Skip the test with the reason when the emulator cannot run; under ``CI=true`` fail it instead (the
    machine image ships it, so its absence there is a broken setup: see tests/required_tools.py)."""
    reason = pubsub_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"Pub/Sub sink not tested: {reason} (CI=true)", pytrace=False)
    pytest.skip(f"Pub/Sub sink not tested: {reason}")


class PubSubEmulator:
    """One emulator process group; ``host`` is ``127.0.0.1:PORT`` (the value of ``PUBSUB_EMULATOR_HOST``)."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout_s: float = 60.0) -> PubSubEmulator:
        gcloud = shutil.which("gcloud")
        assert gcloud is not None, pubsub_missing_reason()
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [gcloud, "beta", "emulators", "pubsub", "start", f"--host-port={self.host}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """The emulator answers ``GET /`` with ``Ok`` once it serves; give up early if it exits."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=f"http://{self.host}", timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"the Pub/Sub emulator exited with {self._proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if http.get("/").text.strip() == "Ok":
                        return
                time.sleep(0.1)
        raise TimeoutError(f"the Pub/Sub emulator did not answer within {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, *, grace_s: float = 10.0) -> str:
        if self._proc is None:
            return "not started"
        outcome = stop_process_group(self._proc, grace_s=grace_s)
        self._proc = None
        return outcome
