"""The ``ovhai`` wrapper script that tests and the dev stack put on ``PATH``."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["install"]


def install(bin_dir: Path, state_path: Path) -> Path:
    """Write an ``ovhai`` executable into ``bin_dir`` that runs this fake on ``state_path``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    root = Path(__file__).resolve().parents[3]  # shared/fakes/ovhai/install.py -> the repository root
    script = bin_dir / "ovhai"
    script.write_text(
        "#!/bin/sh\n"
        f"OVHAI_FAKE_STATE='{state_path}' PYTHONPATH='{root}' exec '{sys.executable}' -m shared.fakes.ovhai \"$@\"\n"
    )
    script.chmod(0o755)
    return script
