"""``python -m agent``: read ``GPUQ_AGENT_*`` settings and serve until SIGTERM."""

from __future__ import annotations

import gc

from aiohttp import web

from agent.app import build_app
from shared.observability.logs import configure_logging
from shared.settings import AgentSettings, LogSettings


def main() -> None:
    # Text, or one JSON object per line (GPUQ_LOG_FORMAT=json, which the control plane passes to its boxes).
    # httpx is quieted there: the Vast self-stop's REST calls make no per-request lines.
    configure_logging(LogSettings(), "agent")
    settings = AgentSettings()
    app = build_app(settings)
    gc.freeze()  # what is built by now lives as long as the process: no full collection walks it mid-stream
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, shutdown_timeout=20.0)


if __name__ == "__main__":
    main()
