"""What every part of the control-plane benchmark shares: the model, the host, the box, the jobs' shape, the log."""

from __future__ import annotations

from bench.progress import progress_log

__all__ = ["HOST", "INSTANCE", "JITTER_S", "MODEL", "SHORT", "log"]

MODEL = "llama3.2:1b"
HOST = "127.0.0.1"
INSTANCE = "local-1"
SHORT = {"num_predict": 8}  # warm and cycle jobs: short generations, the stand-in's first token is what counts
# Jobs one after the other would phase-lock onto the emulator's 100 ms dispatch loop and the SSE stream's 50 ms
# store poll, and every job would see the same wait (38 ms in one run, 103 ms in the next). A random pause
# before each submission samples both loops' phase evenly: the spread is part of what is measured.
JITTER_S = 0.2

log = progress_log("control_plane")
