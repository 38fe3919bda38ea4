"""What every part of the agent-streaming benchmark shares: the repository, the model, the host, the progress log."""

from __future__ import annotations

from pathlib import Path

from bench.progress import progress_log

__all__ = ["HOST", "MODEL", "REPO", "log"]

REPO = Path(__file__).resolve().parents[2]
MODEL = "llama3.2:1b"
HOST = "127.0.0.1"

log = progress_log("agent_stream")
