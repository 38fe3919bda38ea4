"""The ``gpuq`` CLI's jobs client waits out a 429 the way the server asks, a few times, then gives up."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.errors import ApiError
from shared.tools.client import MAX_RATE_LIMIT_RETRIES, JobsClient


class LimitedServer:
    """Answers 429 (with ``retry_after`` as its Retry-After, if set) ``limited`` times, then 200."""

    def __init__(self) -> None:
        self.limited = 0
        self.retry_after: str | None = None
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                limited = outer.requests <= outer.limited
                body = b'{"error": {"code": "rate_limited", "message": "slow down"}}' if limited else b'{"id": "j1"}'
                self.send_response(429 if limited else 200)
                if limited and outer.retry_after is not None:
                    self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture
def server() -> Iterator[LimitedServer]:
    limited = LimitedServer()
    thread = threading.Thread(target=limited.httpd.serve_forever, daemon=True)
    thread.start()
    yield limited
    limited.httpd.shutdown()
    limited.httpd.server_close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)  # the client's waits, recorded instead of slept
    return slept


def test_a_429_is_retried_after_its_retry_after(server: LimitedServer, sleeps: list[float]) -> None:
    server.limited, server.retry_after = 2, "2"
    with JobsClient(server.url, "k") as jobs:
        assert jobs.get("j1") == {"id": "j1"}
    assert server.requests == 3 and sleeps == [2.0, 2.0]


def test_without_retry_after_it_waits_a_second_and_gives_up_after_its_tries(
    server: LimitedServer, sleeps: list[float]
) -> None:
    server.limited = 100
    with JobsClient(server.url, "k") as jobs, pytest.raises(ApiError) as caught:
        jobs.get("j1")
    assert caught.value.status == 429 and caught.value.code == "rate_limited"
    assert server.requests == MAX_RATE_LIMIT_RETRIES and sleeps == [1.0] * (MAX_RATE_LIMIT_RETRIES - 1)


def test_a_retry_after_is_honoured_up_to_a_minute(server: LimitedServer, sleeps: list[float]) -> None:
    server.limited, server.retry_after = 1, "3600"
    with JobsClient(server.url, "k") as jobs:
        assert jobs.get("j1") == {"id": "j1"}
    assert sleeps == [60.0]
