"""The fake's one JSON state file (``OVHAI_FAKE_STATE``): apps, scenario knobs and recorded calls, read
and written under an ``flock`` because every ``ovhai`` call is a process of its own."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["configure", "locked_state", "read_state"]


@contextlib.contextmanager
def locked_state(path: Path) -> Iterator[dict[str, Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        state.setdefault("config", {})
        state.setdefault("apps", {})
        state.setdefault("calls", [])
        yield state
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)


def read_state(path: Path) -> dict[str, Any]:
    """The fake's whole state (apps, config, recorded calls), for assertions."""
    with locked_state(path) as state:
        copy: dict[str, Any] = json.loads(json.dumps(state))
        return copy


def configure(path: Path, **config: Any) -> None:
    """Merge scenario knobs into the state file's ``config``."""
    with locked_state(path) as state:
        state["config"].update(config)
