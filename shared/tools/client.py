"""The jobs API as the ``gpuq`` command line uses it: submit, status, follow a stream."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from shared.backoff import Backoff, parse_retry_after
from shared.errors import ApiError
from shared.tools.sse import SseEvent, iter_sse

__all__ = ["JobsClient"]

MAX_RATE_LIMIT_RETRIES = 5
# Tries of a rate-limited request: the server's Retry-After (at most 60 s), else 1 s between tries.
RATE_LIMIT_BACKOFF = Backoff(first_s=1.0, factor=1.0, cap_s=60.0, max_tries=MAX_RATE_LIMIT_RETRIES)


class JobsClient:
    def __init__(self, url: str, api_key: str, *, timeout_s: float = 30.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout_s, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request; a 429 is retried after its Retry-After, a few times, as a polite client does."""
        delays = RATE_LIMIT_BACKOFF.delays()
        while True:
            response = self._http.request(method, path, **kwargs)
            if response.status_code != 429:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None:
                delays.override(retry_after)
            delay = next(delays, None)
            if delay is None:
                return response  # still limited: the caller sees the 429
            time.sleep(delay)

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise ApiError(response.status_code, body)
        assert isinstance(body, dict)
        return body

    def submit(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self._send("POST", "/v1/jobs", json=body, headers=headers))

    def get(self, job_id: str) -> dict[str, Any]:
        return self._json(self._send("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._json(self._send("POST", f"/v1/jobs/{job_id}/cancel"))

    def cost(self, since: str = "24h") -> dict[str, Any]:
        return self._json(self._send("GET", "/v1/cost", params={"since": since}))

    def models(self) -> dict[str, Any]:
        return self._json(self._send("GET", "/v1/models"))

    def instances(self, *, pool: str | None = None, state: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("pool", pool), ("state", state)) if v}
        return self._json(self._send("GET", "/v1/instances", params=params))

    def stream(self, job_id: str, last_event_id: str | None = None) -> Iterator[SseEvent]:
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        with self._http.stream(
            "GET", f"/v1/jobs/{job_id}/stream", headers=headers, timeout=httpx.Timeout(30.0, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._json(response)
            yield from iter_sse(response)

    def wait(self, job_id: str, *, timeout_s: float = 300.0, poll_s: float = 0.2) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled", "expired"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s:.0f}s")
            time.sleep(poll_s)
