"""A callback receiver for the demo and the tests: verifies Standard Webhooks signatures,
de-duplicates by ``webhook-id`` as a careful receiver does, and records what arrived.

It runs an ordinary HTTP server on 127.0.0.1 in a thread; ``fail_next(n)`` makes it answer 503
to the next ``n`` deliveries (a receiver that is down for a while).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.errors import Unauthorized
from shared.security.webhooks import verify_webhook

__all__ = ["CallbackReceiver", "ReceivedEvent"]


@dataclass
class ReceivedEvent:
    webhook_id: str
    type: str
    data: dict[str, Any]
    verified: bool


@dataclass
class CallbackReceiver:
    secret: str
    events: list[ReceivedEvent] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)  # every verified delivery as sent
    _fail: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def fail_next(self, count: int) -> None:
        with self._cond:
            self._fail = count

    def _handle(self, headers: dict[str, str], body: bytes) -> int:
        with self._cond:
            if self._fail > 0:
                self._fail -= 1
                return 503
        try:
            verify_webhook(self.secret, headers, body)
        except Unauthorized:
            with self._cond:
                self.rejected += 1
            return 401
        payload = json.loads(body)
        with self._cond:
            self.raw.append((dict(headers), body))
            webhook_id = headers["webhook-id"]
            if any(e.webhook_id == webhook_id for e in self.events):
                self.duplicates += 1
            else:
                self.events.append(ReceivedEvent(webhook_id, payload["type"], payload["data"], True))
            self._cond.notify_all()
        return 204

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Block until ``predicate(events)`` holds (woken by each delivery), or the timeout."""
        with self._cond:
            return bool(self._cond.wait_for(lambda: predicate(self.events), timeout=timeout))

    def start(self) -> CallbackReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._handle(headers, body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="callback-receiver").start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
