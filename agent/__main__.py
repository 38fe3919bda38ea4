"""``python -m agent``: read ``GPUQ_AGENT_*`` settings and serve until SIGTERM."""

from __future__ import annotations

import gc
import logging

from aiohttp import web

from agent.app import build_app
from shared.settings import AgentSettings, LogSettings


def main() -> None:
    logging.basicConfig(level=LogSettings().level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the Vast self-stop's REST calls: no per-request lines
    settings = AgentSettings()
    app = build_app(settings)
    gc.freeze()  # what is built by now lives as long as the process: no full collection walks it mid-stream
    web.run_app(app, host=settings.host, port=settings.port, print=None, access_log=None, shutdown_timeout=20.0)


if __name__ == "__main__":
    main()
