"""The real Pub/Sub emulator (``gcloud beta emulators pubsub start``) as a test server.

Started once per test session on a free port (as the Firestore emulator is, ``tests/contract/emulator.py``),
stopped with SIGTERM to its whole process group, SIGKILL after a grace period. Tests make their own topic
and subscription (unique names), so nothing needs resetting between them. Clients reach it through
``PUBSUB_EMULATOR_HOST``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.contract.emulator import GcloudEmulator

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


class PubSubEmulator(GcloudEmulator):
    """The Pub/Sub emulator; ``host`` is the value of ``PUBSUB_EMULATOR_HOST``."""

    label = "Pub/Sub"
    command = ("beta", "emulators", "pubsub", "start")
