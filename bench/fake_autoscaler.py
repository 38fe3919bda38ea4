"""The three calls Vast's PyWorker makes to its autoscaler, answered locally (``REPORT_ADDR``).

- ``GET /pubkey/``: the serverless public key, a real RSA key in PEM (PyWorker parses it with
  pycryptodome and errors out without one);
- ``POST /worker_status/``: periodic load and readiness reports, recorded;
- ``POST /delete_requests/``: finished requests, recorded.

``GET /__state`` says what arrived (the benchmark checks PyWorker reported every request).

    python -m bench.fake_autoscaler --port 8123 --pubkey-file key.pub.pem
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["build_app", "main"]

STATE = web.AppKey("state", dict)


async def _pubkey(request: web.Request) -> web.Response:
    return web.Response(text=request.app[STATE]["pubkey"])


async def _worker_status(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    state = request.app[STATE]
    state["status_reports"] += 1
    state["last_status"] = {
        k: body.get(k)
        for k in ("loadtime", "cur_load", "num_requests_working", "num_requests_recieved", "error_msg", "max_perf")
    }
    return web.json_response({"ok": True})


async def _delete_requests(request: web.Request) -> web.Response:
    body: dict[str, Any] = await request.json()
    state = request.app[STATE]
    state["delete_reports"] += 1
    state["deleted_requests"] += len(body.get("requests", []))
    state["failed_requests"] += sum(1 for r in body.get("requests", []) if not r.get("success"))
    return web.json_response({"ok": True})


async def _state(request: web.Request) -> web.Response:
    return web.json_response({k: v for k, v in request.app[STATE].items() if k != "pubkey"})


def build_app(pubkey_pem: str) -> web.Application:
    app = web.Application()
    app[STATE] = {
        "pubkey": pubkey_pem,
        "status_reports": 0,
        "last_status": None,
        "delete_reports": 0,
        "deleted_requests": 0,
        "failed_requests": 0,
    }
    app.router.add_get("/pubkey/", _pubkey)
    app.router.add_post("/worker_status/", _worker_status)
    app.router.add_post("/delete_requests/", _delete_requests)
    app.router.add_get("/__state", _state)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake-autoscaler", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pubkey-file", type=Path, required=True, help="PEM public key served at /pubkey/")
    args = parser.parse_args(argv)

    async def serve() -> None:
        runner = web.AppRunner(build_app(args.pubkey_file.read_text()), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, args.host, args.port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"fake autoscaler on http://{args.host}:{args.port}", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
