"""Tools the Makefile installs, for the tests that run them.

Outside CI a missing tool skips its test with the reason (a developer may not have run ``make``). Under
``CI=true`` it fails the test: there the Makefile has run, so a missing tool is a broken setup, and a
skip would let the test's checks silently go unrun.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

__all__ = ["VASTAI_CLI", "require_tool"]

# The official Vast.ai CLI pins its own crypto stack, so `make venv` gives it a venv inside ours.
VASTAI_CLI = Path(sys.prefix) / "vastai" / "bin" / "vastai"


def require_tool(tool: str | Path, make_target: str) -> str:
    """The executable ``tool`` (a name looked up on PATH, or a path); if missing, skip the test, or fail it
    under ``CI=true``, with a message naming the ``make`` target that installs it."""
    found = shutil.which(tool)
    if found is not None:
        return found
    reason = f"{tool} is not installed: `make {make_target}` installs it"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a tool the Makefile installs must be there)", pytrace=False)
    pytest.skip(reason)
