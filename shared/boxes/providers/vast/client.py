"""The Vast REST client: auth, pacing, retries, and the one boundary where Vast's failures become ours.

Every Vast or transport failure leaves :meth:`VastClient._request` as a
:class:`~shared.errors.ProviderError` (the Vast branch of ``shared/errors.py``): a refused key is
:class:`~shared.errors.VastAuthError`, a 429 that outlasts the retry policy
:class:`~shared.errors.VastRateLimited`, 5xx and timeouts :class:`~shared.errors.VastUnavailable`,
a create whose answer was lost :class:`~shared.errors.VastCreateUncertain`; the endpoint methods
turn other 4xx into :class:`~shared.errors.VastRejected`.

Retries: 429, 500/502/503/504 and transport errors, with exponential backoff and jitter
(:class:`shared.backoff.Backoff`), ``max_attempts`` calls at most; each endpoint also keeps a minimum
interval between our calls (Vast rate-limits per endpoint and key and sends no Retry-After; one is
honoured if it comes). Creates are retried only when the request certainly did not run (429,
connection refused). The key is sent only as ``Authorization: Bearer``; it is never logged and never
put in a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import random
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import httpx

from shared.backoff import Backoff, Delays, parse_retry_after
from shared.boxes.providers.vast.rows import lower
from shared.errors import VastAuthError, VastCreateUncertain, VastRateLimited, VastRejected, VastUnavailable

__all__ = ["DEFAULT_MIN_INTERVALS_S", "RetryPolicy", "VastClient"]

log = logging.getLogger("gpuq.provider.vast")

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})

DEFAULT_MIN_INTERVALS_S: dict[str, float] = {
    "show": 0.2,
    "list": 0.5,
    "manage": 0.3,
    "destroy": 0.3,
    "bundles": 1.0,
    "create": 1.0,
    "user": 0.5,
}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request. ``max_attempts`` counts calls, the first one included."""

    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    timeout_s: float = 20.0
    min_interval_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIN_INTERVALS_S))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts counts calls: at least 1")

    def backoff(self, max_tries: int | None = None) -> Backoff:
        """Exponential with jitter: uniform in [d/4, d], d = min(max, base * 2**(try-1)), so concurrent
        callers spread out but never retry at once. ``max_tries`` defaults to ``max_attempts``."""
        return Backoff(
            first_s=self.base_delay_s,
            factor=2.0,
            cap_s=self.max_delay_s,
            jitter=(0.25, 1.0),
            max_tries=max_tries or self.max_attempts,
        )


def _body_of(response: httpx.Response) -> tuple[dict[str, Any], str]:
    text = response.text
    try:
        data = response.json()
    except ValueError:
        return {}, text[:300]
    return (data if isinstance(data, dict) else {"data": data}), text[:300]


def _is_auth_failure(status: int, body: Mapping[str, Any], text: str) -> bool:
    if status in (401, 403):
        return True
    error = lower(body.get("error"))
    message = lower(body.get("msg") or body.get("message") or text)
    return status == 404 and (
        error in ("auth_error", "unauthorized", "forbidden") or "invalid user key" in message or "api key" in message
    )


def _rejected(response: httpx.Response, what: str) -> VastRejected:
    body, text = _body_of(response)
    message = str(body.get("msg") or body.get("message") or body.get("error") or text or "")
    return VastRejected(
        f"Vast refused {what} ({response.status_code}: {message[:200]})",
        status_code=response.status_code,
        error=str(body.get("error") or ""),
    )


def _data(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a 2xx answer; anything else is Vast misbehaving, not our caller's bug."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise VastUnavailable(
            f"Vast answered {what} with something that is not a JSON object "
            f"({response.headers.get('Content-Type', '?')})"
        )
    return data


@dataclass(frozen=True)
class _Call:
    """One logical request, as :meth:`VastClient._request` tries it."""

    method: str
    url: str
    endpoint: str
    params: Mapping[str, str] | None
    json_body: Any
    headers: Mapping[str, str]
    idempotent: bool


class VastClient:
    """Async client of the Vast REST API: auth, pacing, retries, error translation.

    Calls inside ``async with client.bound():`` share one connection pool; outside it each call
    opens its own (the control plane runs every provider call in a fresh event loop, where a pool
    from an earlier loop cannot be reused). Pacing state is thread-safe and survives across loops.
    """

    def __init__(
        self,
        api_key: str,
        url: str = "https://console.vast.ai",
        *,
        retry: RetryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not api_key:
            raise VastAuthError("no Vast API key: set VASTAI_API_KEY")
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self.url = url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._http = http
        self._rng = rng or random.Random()
        self._bound: contextvars.ContextVar[httpx.AsyncClient | None] = contextvars.ContextVar(
            f"vast-http-{id(self)}", default=None
        )
        self._pace_lock = threading.Lock()
        self._next_slot: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __repr__(self) -> str:  # never show the key
        return f"VastClient(url={self.url!r})"

    def _new_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.retry.timeout_s, connect=min(10.0, self.retry.timeout_s)),
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    @contextlib.asynccontextmanager
    async def bound(self) -> AsyncIterator[None]:
        """Share one connection pool for the calls made inside the block (re-entrant)."""
        if self._http is not None or self._bound.get() is not None:
            yield
            return
        async with self._new_http() as http:
            token = self._bound.set(http)
            try:
                yield
            finally:
                self._bound.reset(token)

    @contextlib.asynccontextmanager
    async def _session(self) -> AsyncIterator[httpx.AsyncClient]:
        current = self._http or self._bound.get()
        if current is not None:
            yield current
            return
        async with self._new_http() as http:
            yield http

    async def _pace(self, endpoint: str) -> None:
        """Reserve the next slot of this endpoint (min interval between our calls), then wait for it."""
        interval = float(self.retry.min_interval_s.get(endpoint, 0.0))
        with self._pace_lock:
            now = time.monotonic()
            slot = max(now, self._next_slot.get(endpoint, 0.0))
            self._next_slot[endpoint] = slot + interval
        if slot > now:
            await asyncio.sleep(slot - now)

    def retry_delays(self, max_tries: int | None = None) -> Delays:
        """The delays of one run of this client's backoff (its own random source)."""
        return self.retry.backoff(max_tries).delays(rng=self._rng)

    def _delay_after(self, endpoint: str, delay_s: float) -> None:
        with self._pace_lock:
            self._next_slot[endpoint] = max(self._next_slot.get(endpoint, 0.0), time.monotonic() + delay_s)

    async def _request(
        self,
        method: str,
        path: str,
        endpoint: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        idempotent: bool = True,
        auth: bool = True,
    ) -> httpx.Response:
        """One logical request: paced, retried, translated. Returns a response that is not an error
        this module retries or an auth failure (callers look at 2xx/404/other 4xx themselves)."""
        call = _Call(method, self.url + path, endpoint, params, json_body, dict(self._auth) if auth else {}, idempotent)
        delays = self.retry_delays()
        async with self._session() as http:
            while True:
                await self._pace(endpoint)
                self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
                outcome = await self._try(http, call)
                if isinstance(outcome, httpx.Response):
                    return outcome
                failure, retry_after = outcome
                if retry_after is not None:  # the server's word beats our backoff, for every caller of it
                    self._delay_after(endpoint, min(retry_after, self.retry.max_delay_s))
                    delays.override(retry_after)
                attempt = delays.tries
                delay = next(delays, None)
                if delay is None:
                    break
                log.info(
                    "vast %s %s: %s (attempt %d/%d); retrying in %.2fs",
                    method,
                    endpoint,
                    failure,
                    attempt,
                    self.retry.max_attempts,
                    delay,
                )
                self._delay_after(endpoint, delay)
        self._give_up(call, failure)

    async def _try(self, http: httpx.AsyncClient, call: _Call) -> httpx.Response | tuple[str, float | None]:
        """One call: the response to hand back, or (what failed, the server's Retry-After) to retry."""
        try:
            response = await http.request(
                call.method, call.url, params=call.params, json=call.json_body, headers=call.headers
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return type(exc).__name__, None  # the request never reached Vast: safe to retry
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            if not call.idempotent:
                raise VastCreateUncertain(
                    f"{call.method} {call.endpoint}: {type(exc).__name__}; outcome unknown"
                ) from exc
            return type(exc).__name__, None
        status = response.status_code
        if status not in _RETRY_STATUS:
            self._refuse_auth_failure(call, response)
            return response
        if status != 429 and not call.idempotent:
            raise VastCreateUncertain(f"{call.method} {call.endpoint} answered {status}; outcome unknown")
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
        return f"HTTP {status}", retry_after

    @staticmethod
    def _refuse_auth_failure(call: _Call, response: httpx.Response) -> None:
        status = response.status_code
        body, text = _body_of(response)
        if _is_auth_failure(status, body, text):
            message = str(body.get("msg") or body.get("message") or text or "authentication failed")
            log.error("vast %s %s: auth failure %d (%s)", call.method, call.endpoint, status, message[:120])
            raise VastAuthError(f"Vast refused the API key ({status}: {message[:160]})")

    def _give_up(self, call: _Call, failure: str) -> NoReturn:
        attempts = self.retry.max_attempts
        log.warning("vast %s %s: %s after %d attempts", call.method, call.endpoint, failure, attempts)
        if failure == "HTTP 429":
            raise VastRateLimited(f"Vast kept rate-limiting {call.endpoint} ({attempts} attempts)")
        raise VastUnavailable(f"Vast {call.endpoint} failed: {failure} ({attempts} attempts)")

    # --- endpoints -------------------------------------------------------------------------------
    async def show_instance(self, instance_id: int) -> dict[str, Any] | None:
        """``GET /api/v0/instances/{id}/``; ``None`` once the instance is gone."""
        response = await self._request("GET", f"/api/v0/instances/{int(instance_id)}/", "show", params={"owner": "me"})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _rejected(response, f"show instance {instance_id}")
        row = _data(response, "show instance").get("instances")
        if isinstance(row, list):  # tolerate the list form some versions send
            row = row[0] if row else None
        return row if isinstance(row, dict) else None

    async def list_instances(
        self, select_filters: Mapping[str, Any] | None = None, order_by: list[dict[str, str]] | None = None
    ) -> list[dict[str, Any]]:
        """Every page of ``GET /api/v1/instances/`` (``limit`` 25, following ``next_token``)."""
        params: dict[str, str] = {
            "select_filters": json.dumps(dict(select_filters or {})),
            "order_by": json.dumps(order_by or [{"col": "id", "dir": "asc"}]),
            "limit": "25",
        }
        rows: list[dict[str, Any]] = []
        for _ in range(400):  # 10,000 instances: a bound against a server that never ends the list
            response = await self._request("GET", "/api/v1/instances/", "list", params=params)
            if response.status_code != 200:
                raise _rejected(response, "list instances")
            data = _data(response, "list instances")
            rows.extend(row for row in data.get("instances") or [] if isinstance(row, dict))
            token = data.get("next_token")
            if not token:
                return rows
            params["after_token"] = str(token)
        raise VastUnavailable("Vast's instance list did not end after 400 pages")

    async def set_state(self, instance_id: int, state: Literal["running", "stopped"]) -> dict[str, Any] | None:
        """``PUT /api/v0/instances/{id}/ {"state": ...}``; the body (``success`` may be false), or
        ``None`` if the instance is gone."""
        response = await self._request(
            "PUT", f"/api/v0/instances/{int(instance_id)}/", "manage", json_body={"state": state}
        )
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise _rejected(response, f"{state} instance {instance_id}")
        body, _ = _body_of(response)
        return body

    async def destroy_instance(self, instance_id: int) -> dict[str, Any] | None:
        """``DELETE /api/v0/instances/{id}/``; ``None`` if it was already gone."""
        response = await self._request("DELETE", f"/api/v0/instances/{int(instance_id)}/", "destroy", json_body={})
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise _rejected(response, f"destroy instance {instance_id}")
        body, _ = _body_of(response)
        return body

    async def search_offers(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``POST /api/v0/bundles/`` → the ``offers`` rows."""
        response = await self._request("POST", "/api/v0/bundles/", "bundles", json_body=dict(body))
        if response.status_code != 200:
            raise _rejected(response, "search offers")
        return [row for row in _data(response, "search offers").get("offers") or [] if isinstance(row, dict)]

    async def create_instance(self, offer_id: int, body: Mapping[str, Any]) -> int:
        """``PUT /api/v0/asks/{offer_id}/`` → the new instance id (``new_contract``). Never retried
        once it may have run: a lost answer raises :class:`~shared.errors.VastCreateUncertain`."""
        response = await self._request(
            "PUT", f"/api/v0/asks/{int(offer_id)}/", "create", json_body=dict(body), idempotent=False
        )
        data, _ = _body_of(response)
        if response.status_code >= 400 or data.get("success") is False or not data.get("new_contract"):
            raise _rejected(response, f"create from offer {offer_id}")
        return int(data["new_contract"])
