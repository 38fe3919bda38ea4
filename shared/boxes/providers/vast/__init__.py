"""The Vast.ai provider: one logical GPU box, driven through Vast's REST API (httpx, async).

Logical box and Vast instance
    The control plane drives one box by a *logical* id (``GPUQ_INSTANCE_ID``, e.g. ``vast-1``). Which
    Vast instance backs it changes over time: it starts as ``VASTAI_INSTANCE_ID`` (an instance the
    operator rented) or as nothing (the first ``start`` rents one from the best offer), and a restart
    that stays stuck is replaced by a new rental. The mapping lives in a small JSON state file
    (``<state_dir>/vast-<logical id>.json``, ``flock``-guarded, so every process sees the same box).
    ``get/start/stop`` of the logical id always act on the current Vast instance; raw Vast ids
    (``"1234567"``) are accepted too, for leaked boxes the reaper finds and for ``gpuq instances``.

Lifecycle (``start`` = idempotent ensure-running, it never waits for the boot)
    running → nothing; stopped → ``PUT {"state": "running"}``; loading/scheduling → STARTING; no
    instance (never rented, destroyed) → rent one. A start that has not reached ``running`` within
    ``restart_deadline_s`` (the stopped box's GPU was rented by someone else meanwhile, so it stays
    "scheduling") is replaced: the best offer on another machine is rented, the stuck instance is
    destroyed. ``get`` of the logical id runs the same deadline check, so a dispatcher that only
    polls ``get`` while the box is STARTING still gets its replacement.

No duplicate rentals
    Before a create is sent, its intent (a random token, also put in the instance's env as
    ``GPUQ_VAST_INTENT``) is written to the state file under the lock. A second caller that finds an
    intent never sends another create; an answer that was lost (timeout, 5xx) is reconciled by
    listing our labelled instances and adopting the one carrying the token.

Errors (one boundary: :meth:`VastClient._request`)
    Every Vast or transport failure leaves this module as a :class:`~shared.errors.ProviderError`::

        ProviderError (502)
        ├── VastAuthError          provider_auth_error      bad or revoked key (401/403, or 404 + auth_error)
        ├── VastRateLimited        provider_rate_limited    still 429 after the retry policy
        ├── VastUnavailable        provider_unavailable     5xx / timeouts after the retry policy
        ├── VastRejected           provider_rejected        any other 4xx (the message says why)
        ├── VastCreateUncertain    provider_create_uncertain  a create whose answer was lost
        └── NoCapacity             no_capacity / instance_restart_failed   no offer matches

    Retries: 429, 500/502/503/504 and transport errors, with exponential backoff and full jitter,
    ``max_attempts`` calls at most; each endpoint also keeps a minimum interval between our calls
    (Vast rate-limits per endpoint and key and sends no Retry-After). Creates are retried only when
    the request certainly did not run (429, connection refused). The key is sent only as
    ``Authorization: Bearer``; it is never logged and never put in a URL.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import contextvars
import fcntl
import json
import logging
import random
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.boxes.providers.vast.offers import OfferQuery, VastOffer, rank_offers
from shared.clock import Clock, SystemClock
from shared.errors import ProviderError
from shared.models import Instance, InstanceState

__all__ = [
    "DEFAULT_ONSTART",
    "INTENT_ENV",
    "NoCapacity",
    "RetryPolicy",
    "VastAuthError",
    "VastClient",
    "VastCreateUncertain",
    "VastInstanceRecord",
    "VastProvider",
    "VastRateLimited",
    "VastRejected",
    "VastSettings",
    "VastUnavailable",
    "agent_url_of",
    "build_vast_provider",
    "instance_state",
]

log = logging.getLogger("gpuq.provider.vast")

T = TypeVar("T")

INTENT_ENV = "GPUQ_VAST_INTENT"
LOGICAL_ENV = "GPUQ_VAST_LOGICAL_ID"
DEFAULT_ONSTART = "bash /opt/gpuq/onstart.sh"  # infra/agent/Dockerfile's idempotent start-up script
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_MAX_RECORDS = 200
_MAX_TRANSITIONS = 100
_SEARCHING_STALE_S = 60.0
STOP_CONFIRM_S = 5.0


# ------------------------------------------------------------------------------------------------
# Settings
# ------------------------------------------------------------------------------------------------


def _alias(name: str) -> str:
    return name  # the exact environment name (no prefix is added to a validation alias)


class VastSettings(BaseSettings):
    """The Vast.ai provider (read by the control plane and ``gpuq offers/instances``). No prefix:
    the names are Vast's own (``VAST_URL``) or ``VASTAI_*``."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    api_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias=_alias("VASTAI_API_KEY"),
        description="Vast.ai account API key (control plane only). Sent only as a Bearer header; never logged.",
    )
    url: str = Field(
        default="https://console.vast.ai",
        validation_alias=_alias("VAST_URL"),
        description="Vast.ai API base URL (a fake Vast in dev/tests).",
    )
    instance_id: str = Field(
        default="",
        validation_alias=_alias("VASTAI_INSTANCE_ID"),
        description="An existing Vast instance to drive; empty = rent one from offers.",
    )
    preferred_gpus: str = Field(
        default="",
        validation_alias=_alias("VASTAI_PREFERRED_GPUS"),
        description='Comma-separated GPU names to rent ("RTX 4090,RTX_3090"); empty = any.',
    )
    min_vram_gb: float | None = Field(
        default=None, validation_alias=_alias("VASTAI_MIN_VRAM_GB"), description="Minimum VRAM per GPU in GB."
    )
    max_bid_per_hour: float | None = Field(
        default=None,
        validation_alias=_alias("VASTAI_MAX_BID_PER_HOUR"),
        description="Most $/h (dph_total, on-demand) a rented box may cost.",
    )
    default_disk_gb: float = Field(
        default=40.0,
        validation_alias=_alias("VASTAI_DEFAULT_DISK_GB"),
        description="Disk of a rented box in GB (model weights live here).",
    )
    default_image: str = Field(
        default="",
        validation_alias=_alias("VASTAI_DEFAULT_IMAGE"),
        description="Docker image of a rented box: Ollama + the gpuq agent "
        "(infra/agent/Dockerfile, pushed to your registry). Required to rent.",
    )
    template_ids: str = Field(
        default="",
        validation_alias=_alias("VASTAI_TEMPLATE_IDS"),
        description="Comma-separated Vast template hash ids; the first one is the base "
        "of every create (image optional then).",
    )
    onstart: str = Field(
        default=DEFAULT_ONSTART,
        validation_alias=_alias("VASTAI_ONSTART"),
        description="On-start command of a rented box (starts Ollama and the agent).",
    )
    runtype: str = Field(
        default="ssh",
        validation_alias=_alias("VASTAI_RUNTYPE"),
        description="Vast launch mode: ssh (runs the on-start command) or args (image entrypoint).",
    )
    agent_port: int = Field(
        default=8000,
        validation_alias=_alias("VASTAI_AGENT_PORT"),
        description="The agent's container port; its public port is read from the instance.",
    )
    restart_deadline_s: float = Field(
        default=120.0,
        validation_alias=_alias("VASTAI_RESTART_DEADLINE_S"),
        description="A start not running by then (stuck scheduling) is replaced.",
    )
    load_deadline_s: float = Field(
        default=900.0,
        validation_alias=_alias("VASTAI_LOAD_DEADLINE_S"),
        description="A box still loading (image pull) after this long is replaced.",
    )
    max_replacements_per_hour: int = Field(
        default=3,
        validation_alias=_alias("VASTAI_MAX_REPLACEMENTS_PER_HOUR"),
        description="Replacement rentals allowed per hour before giving up.",
    )
    stop_mode: Literal["stop", "destroy"] = Field(
        default="stop",
        validation_alias=_alias("VASTAI_STOP_MODE"),
        description="stop keeps weights on disk (storage still billed); destroy ends all billing.",
    )
    destroy_stopped_after_s: float = Field(
        default=86400.0,
        validation_alias=_alias("VASTAI_DESTROY_STOPPED_AFTER_S"),
        description="reap_stopped destroys boxes stopped longer than this.",
    )
    label: str = Field(
        default="gpuq",
        validation_alias=_alias("VASTAI_LABEL"),
        description="Label marking the instances this deployment owns.",
    )
    min_reliability: float | None = Field(
        default=0.95,
        validation_alias=_alias("VASTAI_MIN_RELIABILITY"),
        description="Minimum machine reliability (0..1) of a rented box.",
    )
    num_gpus: int = Field(default=1, validation_alias=_alias("VASTAI_NUM_GPUS"), description="GPUs per rented box.")
    verified_only: bool = Field(
        default=True, validation_alias=_alias("VASTAI_VERIFIED_ONLY"), description="Rent verified machines only."
    )
    max_attempts: int = Field(
        default=5,
        validation_alias=_alias("VASTAI_MAX_ATTEMPTS"),
        description="Calls per request at most (429/5xx/timeouts are retried).",
    )
    request_timeout_s: float = Field(
        default=20.0,
        validation_alias=_alias("VASTAI_REQUEST_TIMEOUT_S"),
        description="Timeout of one call to the Vast API.",
    )
    state_dir: Path | None = Field(
        default=None,
        validation_alias=_alias("VASTAI_STATE_DIR"),
        description="Where the logical box's state file lives (default GPUQ_DATA_DIR/vast).",
    )

    def gpu_list(self) -> list[str]:
        return [part.strip() for part in self.preferred_gpus.split(",") if part.strip()]

    def template_list(self) -> list[str]:
        return [part.strip() for part in self.template_ids.split(",") if part.strip()]

    def offer_query(self, **overrides: Any) -> OfferQuery:
        base: dict[str, Any] = {
            "gpu_names": tuple(self.gpu_list()),
            "min_vram_gb": self.min_vram_gb,
            "max_dph": self.max_bid_per_hour,
            "min_reliability": self.min_reliability,
            "disk_gb": self.default_disk_gb,
            "num_gpus": self.num_gpus,
            "verified_only": self.verified_only,
        }
        base.update(overrides)
        return OfferQuery(**base)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


class VastAuthError(ProviderError):
    code = "provider_auth_error"


class VastRateLimited(ProviderError):
    code = "provider_rate_limited"


class VastUnavailable(ProviderError):
    code = "provider_unavailable"


class VastRejected(ProviderError):
    code = "provider_rejected"

    def __init__(self, message: str, *, status_code: int, error: str = "", code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
        self.error = error


class VastCreateUncertain(ProviderError):
    code = "provider_create_uncertain"


class NoCapacity(ProviderError):
    code = "no_capacity"


# ------------------------------------------------------------------------------------------------
# Mapping Vast's instance rows
# ------------------------------------------------------------------------------------------------

_STUCK_LIKE = frozenset({"", "created", "scheduling", "stopped", "exited", "offline", "unknown", "rebooting"})


def _lower(value: Any) -> str:
    return str(value).strip().lower() if value is not None else ""


def instance_state(row: Mapping[str, Any] | None) -> InstanceState:
    """Vast's ``actual_status`` / ``intended_status`` / ``cur_state`` → gpuq's state.

    ``actual_status`` is the container (null while provisioning, loading, running, stopped, exited,
    frozen, rebooting, unknown, offline); ``intended_status`` what was asked (running, stopped,
    frozen); ``cur_state`` the hardware contract (``unloaded`` once destroyed). Anything that was asked
    to run and does not run yet is STARTING (the deadline decides when that is "stuck").
    """
    if row is None:
        return InstanceState.GONE
    actual, intended, cur = (
        _lower(row.get("actual_status")),
        _lower(row.get("intended_status")),
        _lower(row.get("cur_state")),
    )
    if cur == "unloaded" or actual in ("destroyed", "deleted"):
        return InstanceState.GONE
    if actual == "running":
        return InstanceState.STOPPING if intended in ("stopped", "frozen") else InstanceState.RUNNING
    if intended in ("stopped", "frozen"):
        return InstanceState.STOPPING if actual in ("loading", "rebooting") else InstanceState.STOPPED
    if not intended and actual in ("stopped", "exited", "frozen"):
        return InstanceState.STOPPED
    return InstanceState.STARTING


def agent_url_of(row: Mapping[str, Any] | None, container_port: int) -> str | None:
    """``http://<public_ipaddr>:<HostPort>`` of the agent's container port, read from ``ports``
    (``{"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41234"}]}``); the host port changes on every
    restart, so it is never cached or assumed."""
    if not row:
        return None
    ip = str(row.get("public_ipaddr") or "").strip()
    ports = row.get("ports") or {}
    if not ip or not isinstance(ports, Mapping):
        return None
    bindings = ports.get(f"{container_port}/tcp") or []
    host_ports = [str(b.get("HostPort", "")).strip() for b in bindings if isinstance(b, Mapping)]
    host_ports = [p for p in host_ports if p.isdigit()]
    if not host_ports:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{host_ports[0]}"


def extra_env_of(row: Mapping[str, Any]) -> dict[str, str]:
    """``extra_env`` as Vast sends it (a list of ``[name, value]`` pairs) or as a dict."""
    raw = row.get("extra_env") or []
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out: dict[str, str] = {}
    for pair in raw:
        if isinstance(pair, list | tuple) and len(pair) == 2:
            out[str(pair[0])] = str(pair[1])
    return out


def _vast_id(row: Mapping[str, Any]) -> int:
    return int(row["id"])


# ------------------------------------------------------------------------------------------------
# REST client
# ------------------------------------------------------------------------------------------------

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

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Exponential with jitter: uniform in [cap/4, cap], cap = min(max, base * 2**(attempt-1))
        (``attempt`` counts from 1), so concurrent callers spread out but never retry at once."""
        cap = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, attempt - 1))
        return rng.uniform(cap / 4, cap)


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
    error = _lower(body.get("error"))
    message = _lower(body.get("msg") or body.get("message") or text)
    return status == 404 and (
        error in ("auth_error", "unauthorized", "forbidden") or "invalid user key" in message or "api key" in message
    )


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

    def backoff_s(self, attempt: int) -> float:
        return self.retry.backoff_s(attempt, self._rng)

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
        policy = self.retry
        headers = dict(self._auth) if auth else {}
        async with self._session() as http:
            for attempt in range(1, policy.max_attempts + 1):
                await self._pace(endpoint)
                self.calls[endpoint] = self.calls.get(endpoint, 0) + 1
                try:
                    response = await http.request(
                        method, self.url + path, params=params, json=json_body, headers=headers
                    )
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    failure: str = f"{type(exc).__name__}"  # the request never reached Vast: safe to retry
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    if not idempotent:
                        raise VastCreateUncertain(
                            f"{method} {endpoint}: {type(exc).__name__}; outcome unknown"
                        ) from exc
                    failure = type(exc).__name__
                else:
                    status = response.status_code
                    if status not in _RETRY_STATUS:
                        body, text = _body_of(response)
                        if _is_auth_failure(status, body, text):
                            message = str(body.get("msg") or body.get("message") or text or "authentication failed")
                            log.error("vast %s %s: auth failure %d (%s)", method, endpoint, status, message[:120])
                            raise VastAuthError(f"Vast refused the API key ({status}: {message[:160]})")
                        return response
                    if status != 429 and not idempotent:
                        raise VastCreateUncertain(f"{method} {endpoint} answered {status}; outcome unknown")
                    failure = f"HTTP {status}"
                    retry_after = response.headers.get("Retry-After", "")
                    if status == 429 and retry_after.replace(".", "", 1).isdigit():
                        self._delay_after(endpoint, min(float(retry_after), policy.max_delay_s))
                if attempt == policy.max_attempts:
                    break
                delay = policy.backoff_s(attempt, self._rng)
                log.info(
                    "vast %s %s: %s (attempt %d/%d); retrying in %.2fs",
                    method,
                    endpoint,
                    failure,
                    attempt,
                    policy.max_attempts,
                    delay,
                )
                self._delay_after(endpoint, delay)
        log.warning("vast %s %s: %s after %d attempts", method, endpoint, failure, policy.max_attempts)
        if failure == "HTTP 429":
            raise VastRateLimited(f"Vast kept rate-limiting {endpoint} ({policy.max_attempts} attempts)")
        raise VastUnavailable(f"Vast {endpoint} failed: {failure} ({policy.max_attempts} attempts)")

    @staticmethod
    def _rejected(response: httpx.Response, what: str) -> VastRejected:
        body, text = _body_of(response)
        message = str(body.get("msg") or body.get("message") or body.get("error") or text or "")
        return VastRejected(
            f"Vast refused {what} ({response.status_code}: {message[:200]})",
            status_code=response.status_code,
            error=str(body.get("error") or ""),
        )

    @staticmethod
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

    # --- endpoints -------------------------------------------------------------------------------
    async def show_instance(self, instance_id: int) -> dict[str, Any] | None:
        """``GET /api/v0/instances/{id}/``; ``None`` once the instance is gone."""
        response = await self._request("GET", f"/api/v0/instances/{int(instance_id)}/", "show", params={"owner": "me"})
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._rejected(response, f"show instance {instance_id}")
        row = self._data(response, "show instance").get("instances")
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
                raise self._rejected(response, "list instances")
            data = self._data(response, "list instances")
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
            raise self._rejected(response, f"{state} instance {instance_id}")
        body, _ = _body_of(response)
        return body

    async def destroy_instance(self, instance_id: int) -> dict[str, Any] | None:
        """``DELETE /api/v0/instances/{id}/``; ``None`` if it was already gone."""
        response = await self._request("DELETE", f"/api/v0/instances/{int(instance_id)}/", "destroy", json_body={})
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise self._rejected(response, f"destroy instance {instance_id}")
        body, _ = _body_of(response)
        return body

    async def search_offers(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """``POST /api/v0/bundles/`` → the ``offers`` rows."""
        response = await self._request("POST", "/api/v0/bundles/", "bundles", json_body=dict(body))
        if response.status_code != 200:
            raise self._rejected(response, "search offers")
        return [row for row in self._data(response, "search offers").get("offers") or [] if isinstance(row, dict)]

    async def create_instance(self, offer_id: int, body: Mapping[str, Any]) -> int:
        """``PUT /api/v0/asks/{offer_id}/`` → the new instance id (``new_contract``). Never retried
        once it may have run: a lost answer raises :class:`VastCreateUncertain`."""
        response = await self._request(
            "PUT", f"/api/v0/asks/{int(offer_id)}/", "create", json_body=dict(body), idempotent=False
        )
        data, _ = _body_of(response)
        if response.status_code >= 400 or data.get("success") is False or not data.get("new_contract"):
            raise self._rejected(response, f"create from offer {offer_id}")
        return int(data["new_contract"])


# ------------------------------------------------------------------------------------------------
# Records and state file
# ------------------------------------------------------------------------------------------------


class VastInstanceRecord(BaseModel):
    """What we saw of one Vast instance, for cost accounting: $/h and when it ran, stopped, died."""

    id: int
    logical_id: str | None = None
    label: str | None = None
    price_per_hour: float = 0.0
    state: InstanceState = InstanceState.STARTING
    gpu_name: str | None = None
    machine_id: int | None = None
    offer_id: int | None = None
    created_at: float | None = None
    first_seen_at: float
    last_seen_at: float
    running_since: float | None = None
    running_s: float = 0.0
    stopped_at: float | None = None
    destroyed_at: float | None = None
    replaced_by: int | None = None
    rental_token: str | None = None  # GPUQ_VAST_INTENT of a box this provider rented
    transitions: list[tuple[float, str]] = Field(default_factory=list)


def _note(
    records: dict[str, Any],
    vid: int,
    now: float,
    state: InstanceState,
    row: Mapping[str, Any] | None,
    logical_id: str | None = None,
) -> dict[str, Any]:
    """Fold one observation into the record of ``vid`` (created on first sight)."""
    rec: dict[str, Any] = records.setdefault(
        str(vid), {"id": vid, "first_seen_at": now, "last_seen_at": now, "state": None, "transitions": []}
    )
    rec["last_seen_at"] = now
    if logical_id:
        rec["logical_id"] = logical_id
    if row is not None:
        rec["label"] = row.get("label")
        if row.get("dph_total") is not None:
            rec["price_per_hour"] = float(row["dph_total"])
        rec["gpu_name"] = row.get("gpu_name") or rec.get("gpu_name")
        rec["machine_id"] = row.get("machine_id") or rec.get("machine_id")
        if row.get("start_date"):
            rec["created_at"] = float(row["start_date"])
    previous = rec.get("state")
    if previous == state.value:
        return rec
    rec["state"] = state.value
    rec["transitions"] = [*rec.get("transitions", []), [now, state.value]][-_MAX_TRANSITIONS:]
    if previous == InstanceState.RUNNING.value and rec.get("running_since"):
        rec["running_s"] = float(rec.get("running_s", 0.0)) + max(0.0, now - float(rec["running_since"]))
        rec["running_since"] = None
    if state is InstanceState.RUNNING:
        rec["running_since"] = now
    if state is InstanceState.STOPPED:
        rec["stopped_at"] = rec.get("stopped_at") or now
    elif state is not InstanceState.GONE:
        rec["stopped_at"] = None
    if state is InstanceState.GONE:
        rec["destroyed_at"] = rec.get("destroyed_at") or now
    return rec


def _trim(records: dict[str, Any]) -> None:
    if len(records) <= _MAX_RECORDS:
        return
    gone = sorted((r for r in records.values() if r.get("destroyed_at")), key=lambda r: r["destroyed_at"])
    for rec in gone[: len(records) - _MAX_RECORDS]:
        records.pop(str(rec["id"]), None)


class _StateFile:
    """A JSON document guarded by ``flock`` (short critical sections: never held across a network call)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                tmp.replace(self.path)


# ------------------------------------------------------------------------------------------------
# The provider
# ------------------------------------------------------------------------------------------------


class VastProvider:
    """:class:`~shared.boxes.providers.base.ComputeProvider` for Vast.ai (see the module docstring)."""

    name = "vast"

    def __init__(
        self,
        settings: VastSettings,
        *,
        logical_id: str,
        state_dir: Path,
        client: VastClient | None = None,
        agent_env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        observe_ttl_s: float = 1.0,
    ) -> None:
        self.settings = settings
        self.logical_id = logical_id
        self.client = client or VastClient(
            settings.api_key.get_secret_value(),
            settings.url,
            retry=RetryPolicy(max_attempts=settings.max_attempts, timeout_s=settings.request_timeout_s),
        )
        self._agent_env = dict(agent_env or {})
        self._clock = clock or SystemClock()
        self._state = _StateFile(Path(state_dir) / f"vast-{logical_id}.json")
        self._observe_ttl_s = observe_ttl_s
        self._cache_lock = threading.Lock()
        self._cache: dict[int, tuple[float, dict[str, Any] | None]] = {}

    def __repr__(self) -> str:
        return f"VastProvider(logical_id={self.logical_id!r}, url={self.client.url!r})"

    # --- state file -------------------------------------------------------------------------------
    def _mutate_sync(self, fn: Callable[[dict[str, Any]], T]) -> T:
        with self._state.transaction() as state:
            self._seed(state)
            return fn(state)

    async def _mutate(self, fn: Callable[[dict[str, Any]], T]) -> T:
        return await asyncio.to_thread(self._mutate_sync, fn)

    def _seed(self, state: dict[str, Any]) -> None:
        # VASTAI_INSTANCE_ID, else a logical id that is itself a Vast id (GPUQ_INSTANCE_ID=12345678).
        configured = self.settings.instance_id.strip() or (self.logical_id if self.logical_id.isdigit() else "")
        state.setdefault("logical_id", self.logical_id)
        state.setdefault("records", {})
        state.setdefault("to_destroy", [])
        state.setdefault("replacements", [])
        state.setdefault("creates_sent", 0)
        if "vast_id" not in state or (configured and state.get("seeded_from") != configured):
            digits = configured.removeprefix("C.")  # Vast also writes instance ids as "C.1234567"
            state["vast_id"] = int(digits) if digits.isdigit() else None
            state["seeded_from"] = configured

    def current_vast_id(self) -> int | None:
        """The Vast instance behind the logical box right now (``None``: nothing rented)."""
        return self._mutate_sync(lambda s: s.get("vast_id"))

    def records_sync(self) -> list[VastInstanceRecord]:
        """Every instance this provider has seen: id, label, $/h, state and timestamps."""
        raw = self._mutate_sync(lambda s: list(s["records"].values()))
        return [VastInstanceRecord.model_validate({**r, "state": r.get("state") or "starting"}) for r in raw]

    async def records(self) -> list[VastInstanceRecord]:
        return await asyncio.to_thread(self.records_sync)

    def creates_sent(self) -> int:
        """How many create requests this deployment has sent (duplicate-rental checks)."""
        return int(self._mutate_sync(lambda s: s.get("creates_sent", 0)))

    # --- observation ------------------------------------------------------------------------------
    async def _show(self, vid: int, *, fresh: bool = False) -> dict[str, Any] | None:
        now = time.monotonic()
        if not fresh:
            with self._cache_lock:
                hit = self._cache.get(vid)
            if hit is not None and now - hit[0] < self._observe_ttl_s:
                return hit[1]
        row = await self.client.show_instance(vid)
        with self._cache_lock:
            self._cache[vid] = (time.monotonic(), row)
        return row

    def _forget(self, vid: int | None) -> None:
        with self._cache_lock:
            if vid is None:
                self._cache.clear()
            else:
                self._cache.pop(vid, None)

    def _to_instance(
        self,
        row: Mapping[str, Any] | None,
        public_id: str,
        vid: int | None,
        record: Mapping[str, Any] | None = None,
        detail: str | None = None,
    ) -> Instance:
        state = instance_state(row)
        record = record or {}
        if detail is None and row is not None:
            detail = f"vast {vid}: actual={row.get('actual_status')} intended={row.get('intended_status')}" + (
                f" ({str(row.get('status_msg'))[:80]})" if row.get("status_msg") else ""
            )
        elif detail is None:
            detail = f"vast {vid}: gone" if vid is not None else "no Vast instance rented"
        return Instance(
            id=public_id,
            provider=self.name,
            state=state,
            agent_url=agent_url_of(row, self.settings.agent_port) if state is InstanceState.RUNNING else None,
            label=(row or {}).get("label") or record.get("label"),
            price_per_hour=float((row or {}).get("dph_total") or record.get("price_per_hour") or 0.0),
            started_at=record.get("running_since") or record.get("created_at"),
            stopped_at=record.get("stopped_at"),
            detail=detail,
        )

    async def _observe_current(self) -> tuple[Instance, dict[str, Any] | None, dict[str, Any]]:
        """(instance, Vast row, state snapshot) of the logical box; reconciles a pending create first."""
        state = await self._mutate(lambda s: json.loads(json.dumps(s)))
        if state.get("intent"):
            state = await self._reconcile_intent(state)
        vid = state.get("vast_id")
        if vid is None:
            intent = state.get("intent")
            if intent:
                return (
                    Instance(
                        id=self.logical_id,
                        provider=self.name,
                        state=InstanceState.STARTING,
                        detail="a rental is being created",
                    ),
                    None,
                    state,
                )
            return self._to_instance(None, self.logical_id, None), None, state
        row = await self._show(vid)
        if row is None and not await self._really_gone(vid):
            raise VastUnavailable(f"Vast says instance {vid} does not exist but still lists it")
        now = self._clock.now()
        observed = instance_state(row)

        def note(s: dict[str, Any]) -> tuple[dict[str, Any], float | None]:
            rec = _note(s["records"], vid, now, observed, row, self.logical_id)
            if s.get("vast_id") == vid:
                if observed is InstanceState.STARTING:
                    s["waiting_since"] = s.get("waiting_since") or now
                else:
                    s["waiting_since"] = None
                if observed is InstanceState.GONE:  # destroyed behind our back: the next start rents anew
                    log.warning("vast %s behind %s is gone", vid, self.logical_id)
                    s.update(vast_id=None, want=None, start_requested_at=None)
            return dict(rec), s.get("waiting_since")

        record, state["waiting_since"] = await self._mutate(note)
        return self._to_instance(row, self.logical_id, vid, record), row, state

    async def _really_gone(self, vid: int) -> bool:
        """Before forgetting the box, ask the (authenticated) list too: a 404 is not proof enough."""
        rows = await self.client.list_instances({"id": {"eq": vid}})
        return all(_vast_id(r) != vid for r in rows)

    def _deadline_passed(self, row: Mapping[str, Any] | None, state: Mapping[str, Any]) -> bool:
        since = state.get("waiting_since")
        if since is None:
            return False
        loading = _lower((row or {}).get("actual_status")) == "loading"
        deadline = self.settings.load_deadline_s if loading else self.settings.restart_deadline_s
        return self._clock.now() - float(since) >= deadline

    # --- the interface ----------------------------------------------------------------------------
    def _resolve(self, instance_id: str) -> tuple[int | None, bool]:
        if instance_id == self.logical_id:
            return self.current_vast_id(), True
        raw = instance_id.removeprefix("vast:")
        if raw.isdigit():
            return int(raw), False
        raise VastRejected(
            f"unknown instance id {instance_id!r} (use {self.logical_id!r} or a Vast id)",
            status_code=404,
            code="provider_unknown_instance",
        )

    async def get(self, instance_id: str) -> Instance | None:
        """The box's state. For the logical box a start stuck past its deadline is replaced here."""
        async with self.client.bound():
            vid, logical = self._resolve(instance_id)
            if not logical:
                if vid is None:
                    return None
                row = await self._show(vid)
                record = await self._mutate(
                    lambda s: dict(_note(s["records"], vid, self._clock.now(), instance_state(row), row))
                )
                return self._to_instance(row, instance_id, vid, record) if row is not None else None
            instance, row, state = await self._observe_current()
            if instance.state is InstanceState.STARTING and self._deadline_passed(row, state):
                return await self._replace(row, state)
            return instance

    async def start(self, instance_id: str) -> Instance:
        """Ensure the box runs; returns at once (STARTING while it boots)."""
        async with self.client.bound():
            vid, logical = self._resolve(instance_id)
            if not logical:
                if vid is None:
                    raise VastRejected("no such instance", status_code=404)
                return await self._start_raw(vid, instance_id)
            instance, row, state = await self._observe_current()
            if instance.state in (InstanceState.RUNNING, InstanceState.STOPPING):
                return instance
            if instance.state is InstanceState.STARTING:
                if self._deadline_passed(row, state):
                    return await self._replace(row, state)
                return instance
            if instance.state is InstanceState.GONE:
                return await self._provision(replaces=None, exclude_machine=None)
            assert state.get("vast_id") is not None
            return await self._start_existing(int(state["vast_id"]), row)

    async def ensure_running(self) -> Instance:
        """:meth:`start` of the logical box."""
        return await self.start(self.logical_id)

    async def _start_existing(self, vid: int, row: Mapping[str, Any] | None) -> Instance:
        body = await self.client.set_state(vid, "running")
        self._forget(vid)
        if body is None:
            await self._mutate(lambda s: s.update(vast_id=None) if s.get("vast_id") == vid else None)
            return await self._provision(replaces=None, exclude_machine=None)
        if body.get("success") is False:
            raise ProviderError(
                f"Vast refused to start {vid}: {str(body.get('msg') or body)[:200]}", code="provider_start_failed"
            )
        now = self._clock.now()

        def note(s: dict[str, Any]) -> dict[str, Any]:
            s.update(want="running", start_requested_at=now, waiting_since=now)
            return dict(_note(s["records"], vid, now, InstanceState.STARTING, row, self.logical_id))

        record = await self._mutate(note)
        log.info("start of %s (vast %s) requested", self.logical_id, vid)
        starting = {**(row or {}), "actual_status": (row or {}).get("actual_status"), "intended_status": "running"}
        return self._to_instance(starting, self.logical_id, vid, record, detail=f"vast {vid}: start requested")

    async def _start_raw(self, vid: int, public_id: str) -> Instance:
        body = await self.client.set_state(vid, "running")
        self._forget(vid)
        if body is None:
            return self._to_instance(None, public_id, vid)
        if body.get("success") is False:
            raise ProviderError(
                f"Vast refused to start {vid}: {str(body.get('msg') or body)[:200]}", code="provider_start_failed"
            )
        row = await self._show(vid, fresh=True)
        return self._to_instance(row, public_id, vid)

    async def stop(self, instance_id: str) -> Instance:
        """Stop (or, in ``destroy`` mode, destroy) the box and confirm it with a GET."""
        if self.settings.stop_mode == "destroy":
            return await self.destroy(instance_id)
        async with self.client.bound():
            vid, logical = self._resolve(instance_id)
            if vid is None:
                return self._to_instance(None, instance_id, None)
            for attempt in range(1, 4):
                body = await self.client.set_state(vid, "stopped")
                self._forget(vid)
                if body is None or body.get("success") is not False:
                    break
                log.warning("Vast refused to stop %s (attempt %d/3): %s", vid, attempt, str(body.get("msg"))[:200])
                if attempt == 3:
                    raise ProviderError(
                        f"Vast refused to stop {vid}: {str(body.get('msg') or body)[:200]}", code="provider_stop_failed"
                    )
                await asyncio.sleep(self.client.backoff_s(attempt))
            row, observed = await self._confirm_stop(vid)
            now = self._clock.now()

            def note(s: dict[str, Any]) -> dict[str, Any]:
                if s.get("vast_id") == vid:
                    s.update(want="stopped", start_requested_at=None, waiting_since=None)
                return dict(_note(s["records"], vid, now, observed, row, self.logical_id if logical else None))

            record = await self._mutate(note)
            instance = self._to_instance(row, instance_id, vid, record)
            if observed in (InstanceState.RUNNING, InstanceState.STARTING):
                raise ProviderError(f"stop of {vid} not confirmed: {instance.detail}", code="provider_stop_failed")
            log.info("stop of %s (vast %s) confirmed: %s", instance_id, vid, observed.value)
            return instance

    async def _confirm_stop(self, vid: int) -> tuple[dict[str, Any] | None, InstanceState]:
        """GET until Vast shows the stop (``intended_status: stopped``), for up to ``STOP_CONFIRM_S``."""
        deadline = time.monotonic() + STOP_CONFIRM_S
        while True:
            row = await self._show(vid, fresh=True)
            observed = instance_state(row)
            if observed not in (InstanceState.RUNNING, InstanceState.STARTING) or time.monotonic() >= deadline:
                return row, observed
            await asyncio.sleep(0.5)

    async def destroy(self, instance_id: str) -> Instance:
        """Destroy the instance (all billing ends); confirmed with a GET."""
        async with self.client.bound():
            vid, _logical = self._resolve(instance_id)
            if vid is None:
                return self._to_instance(None, instance_id, None)
            await self._destroy(vid)
            return self._to_instance(None, instance_id, vid, detail=f"vast {vid}: destroyed")

    async def _destroy(self, vid: int) -> None:
        body = await self.client.destroy_instance(vid)
        self._forget(vid)
        if body is not None and body.get("success") is False:
            raise ProviderError(
                f"Vast refused to destroy {vid}: {str(body.get('msg') or body)[:200]}", code="provider_destroy_failed"
            )
        row = await self._show(vid, fresh=True)
        if row is not None and instance_state(row) is not InstanceState.GONE:
            raise ProviderError(f"destroy of {vid} not confirmed", code="provider_destroy_failed")
        now = self._clock.now()

        def note(s: dict[str, Any]) -> None:
            _note(s["records"], vid, now, InstanceState.GONE, None)
            s["to_destroy"] = [i for i in s["to_destroy"] if i != vid]
            if s.get("vast_id") == vid:
                s.update(vast_id=None, want=None, start_requested_at=None, waiting_since=None)

        await self._mutate(note)
        log.info("vast instance %s destroyed", vid)

    async def list(self) -> list[Instance]:
        """Our instances (label ``VASTAI_LABEL``) plus the logical box; the logical one under its logical id."""
        async with self.client.bound():
            state = await self._mutate(lambda s: json.loads(json.dumps(s)))
            if state.get("intent"):  # adopt a rental whose answer was lost before anyone calls it unknown
                await self._reconcile_intent(state)
            rows = await self.client.list_instances({"label": {"in": [self.settings.label]}})
            current = self.current_vast_id()
            if current is not None and all(_vast_id(r) != current for r in rows):
                row = await self._show(current)
                if row is not None:
                    rows.append(row)
            now = self._clock.now()

            def note(s: dict[str, Any]) -> list[dict[str, Any]]:
                out = []
                for row in rows:
                    vid = _vast_id(row)
                    is_current = vid == s.get("vast_id")
                    out.append(
                        dict(
                            _note(
                                s["records"],
                                vid,
                                now,
                                instance_state(row),
                                row,
                                self.logical_id if is_current else None,
                            )
                        )
                    )
                _trim(s["records"])
                return out

            records = await self._mutate(note)
            return [
                self._to_instance(
                    row, self.logical_id if _vast_id(row) == current else str(_vast_id(row)), _vast_id(row), record
                )
                for row, record in zip(rows, records, strict=True)
            ]

    async def reap_stopped(self, older_than_s: float | None = None) -> builtins.list[str]:
        """Destroy our instances stopped for longer than ``older_than_s`` (default
        ``VASTAI_DESTROY_STOPPED_AFTER_S``) and any replaced box still waiting to be destroyed."""
        limit = self.settings.destroy_stopped_after_s if older_than_s is None else older_than_s
        destroyed: builtins.list[str] = []
        async with self.client.bound():
            for vid in await self._mutate(lambda s: list(s["to_destroy"])):
                with contextlib.suppress(ProviderError):
                    await self._destroy(int(vid))
                    destroyed.append(str(vid))
            instances = await self.list()
            records = {r.id: r for r in await self.records()}
            now = self._clock.now()
            current = self.current_vast_id()
            for instance in instances:
                vid = current if instance.id == self.logical_id else int(instance.id)
                if vid is None or instance.state is not InstanceState.STOPPED:
                    continue
                stopped_at = records[vid].stopped_at if vid in records else None
                if stopped_at is not None and now - stopped_at >= limit:
                    log.info("vast instance %s stopped for %.0fs: destroying it", vid, now - stopped_at)
                    await self._destroy(vid)
                    destroyed.append(str(vid))
        return destroyed

    # --- offers and rentals -----------------------------------------------------------------------
    async def search_offers(self, query: OfferQuery | None = None) -> builtins.list[VastOffer]:
        """Offers matching ``query`` (default: from the settings), cheapest first."""
        query = query or self.settings.offer_query()
        rows = await self.client.search_offers(query.bundles_body())
        return rank_offers(rows, query, self.settings.gpu_list())

    def _create_body(
        self,
        *,
        image: str | None,
        env: Mapping[str, str],
        onstart: str | None,
        disk_gb: float,
        label: str | None,
        runtype: str | None,
        template_hash_id: str | None,
    ) -> dict[str, Any]:
        """The create body, shaped like ``vastai create instance`` sends it."""
        body: dict[str, Any] = {
            "client_id": "me",
            "image": image,
            "env": dict(env),
            "price": None,
            "disk": disk_gb,
            "label": label,
            "extra": None,
            "onstart": onstart,
            "image_login": None,
            "python_utf8": False,
            "lang_utf8": False,
            "use_jupyter_lab": False,
            "jupyter_dir": None,
            "force": False,
            "cancel_unavail": True,
            "template_hash_id": template_hash_id,
            "user": None,
        }
        if runtype:
            body["runtype"] = runtype
        return body

    async def create_instance(
        self,
        offer_id: int,
        *,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        onstart: str | None = None,
        disk_gb: float | None = None,
        label: str | None = None,
        runtype: str | None = None,
    ) -> int:
        """Rent one offer as given (``gpuq instances create``); not tied to the logical box."""
        templates = self.settings.template_list()
        if not image and not templates and not self.settings.default_image:
            raise ProviderError(
                "give an image (or set VASTAI_DEFAULT_IMAGE / VASTAI_TEMPLATE_IDS)", code="provider_not_configured"
            )
        body = self._create_body(
            image=image or (None if templates else self.settings.default_image),
            env=env or {},
            onstart=onstart,
            disk_gb=disk_gb or self.settings.default_disk_gb,
            label=label if label is not None else self.settings.label,
            runtype=runtype or self.settings.runtype,
            template_hash_id=templates[0] if templates else None,
        )
        async with self.client.bound():
            new_id = await self.client.create_instance(offer_id, body)
        now = self._clock.now()

        def note(s: dict[str, Any]) -> None:
            s["creates_sent"] = int(s.get("creates_sent", 0)) + 1
            rec = _note(s["records"], new_id, now, InstanceState.STARTING, None)
            rec.update(offer_id=offer_id, label=body["label"])

        await self._mutate(note)
        return new_id

    def _box_env(self, token: str) -> dict[str, str]:
        port = self.settings.agent_port
        return {
            **self._agent_env,
            "GPUQ_AGENT_PROVIDER": "vast",
            "GPUQ_AGENT_INSTANCE_ID": self.logical_id,
            "GPUQ_AGENT_PORT": str(port),
            LOGICAL_ENV: self.logical_id,
            INTENT_ENV: token,
            f"-p {port}:{port}": "1",
        }

    async def _replace(self, row: Mapping[str, Any] | None, state: Mapping[str, Any]) -> Instance:
        stuck = state.get("vast_id")
        waited = self._clock.now() - float(state.get("waiting_since") or self._clock.now())
        recent = [t for t in state.get("replacements", []) if self._clock.now() - float(t) < 3600.0]
        if len(recent) >= self.settings.max_replacements_per_hour:
            raise NoCapacity(
                f"vast {stuck} not running after {waited:.0f}s and {len(recent)} replacements this "
                "hour already: giving up",
                code="instance_restart_failed",
            )
        log.warning(
            "vast %s (%s) not running %.0fs after the start: renting a replacement", stuck, self.logical_id, waited
        )
        machine = (row or {}).get("machine_id")
        return await self._provision(replaces=stuck, exclude_machine=int(machine) if machine else None)

    async def _provision(self, *, replaces: int | None, exclude_machine: int | None) -> Instance:
        """Rent the best offer for the logical box (then destroy ``replaces``). At most one create per
        need: the intent is claimed under the state-file lock before anything is sent."""
        if not self.settings.default_image and not self.settings.template_list():
            raise ProviderError(
                "cannot rent a box: set VASTAI_DEFAULT_IMAGE (the agent image built from "
                "infra/agent/Dockerfile) or VASTAI_TEMPLATE_IDS",
                code="provider_not_configured",
            )
        token = secrets.token_hex(8)
        now = self._clock.now()

        def claim(s: dict[str, Any]) -> bool:
            intent = s.get("intent")
            if intent and not (
                intent.get("state") == "searching" and now - float(intent.get("at", 0)) > _SEARCHING_STALE_S
            ):
                return False
            if s.get("vast_id") != replaces:
                return False  # someone else changed the box meanwhile
            s["intent"] = {"token": token, "state": "searching", "at": now, "replaces": replaces}
            return True

        if not await self._mutate(claim):
            return Instance(
                id=self.logical_id,
                provider=self.name,
                state=InstanceState.STARTING,
                detail="another caller is renting the box",
            )
        try:
            excluded = frozenset({exclude_machine}) if exclude_machine is not None else frozenset()
            offers = await self.search_offers(self.settings.offer_query(exclude_machine_ids=excluded))
            if not offers:
                code = "instance_restart_failed" if replaces is not None else "no_capacity"
                wanted = ", ".join(self.settings.gpu_list()) or "any GPU"
                price = f"${self.settings.max_bid_per_hour:g}/h" if self.settings.max_bid_per_hour else "any price"
                raise NoCapacity(
                    f"no Vast offer matches ({wanted}, {price}, min VRAM {self.settings.min_vram_gb or 0:g} GB)",
                    code=code,
                )
            offer = offers[0]
            templates = self.settings.template_list()
            body = self._create_body(
                image=self.settings.default_image or None,
                env=self._box_env(token),
                onstart=self.settings.onstart or None,
                disk_gb=self.settings.default_disk_gb,
                label=self.settings.label,
                runtype=self.settings.runtype,
                template_hash_id=templates[0] if templates else None,
            )

            def sending(s: dict[str, Any]) -> None:
                s["intent"] = {
                    "token": token,
                    "state": "sending",
                    "at": self._clock.now(),
                    "replaces": replaces,
                    "offer_id": offer.id,
                    "machine_id": offer.machine_id,
                }
                s["creates_sent"] = int(s.get("creates_sent", 0)) + 1

            await self._mutate(sending)
            log.info(
                "renting offer %s (%s, $%.3f/h) for %s", offer.id, offer.gpu_name, offer.dph_total, self.logical_id
            )
            new_id = await self.client.create_instance(offer.id, body)
        except VastCreateUncertain as exc:
            log.warning("create for %s: %s; reconciling by label", self.logical_id, exc.message)
            state = await self._reconcile_intent(await self._mutate(lambda s: json.loads(json.dumps(s))))
            if state.get("vast_id") is not None and state.get("vast_id") != replaces:
                adopted = await self.get(self.logical_id)
                if adopted is not None:
                    return adopted
            return Instance(
                id=self.logical_id,
                provider=self.name,
                state=InstanceState.STARTING,
                detail="create sent, answer lost: reconciling",
            )
        except BaseException:
            await self._mutate(
                lambda s: s.update(intent=None) if (s.get("intent") or {}).get("token") == token else None
            )
            raise
        await self._adopt(new_id, token, offer.id, offer.dph_total, offer.gpu_name)
        await self._destroy_leftovers()
        return Instance(
            id=self.logical_id,
            provider=self.name,
            state=InstanceState.STARTING,
            label=self.settings.label,
            price_per_hour=offer.dph_total,
            detail=f"vast {new_id}: rented from offer {offer.id}",
        )

    async def _adopt(
        self, new_id: int, token: str, offer_id: int | None, price: float | None, gpu_name: str | None
    ) -> None:
        now = self._clock.now()

        def adopt(s: dict[str, Any]) -> None:
            intent = s.get("intent") or {}
            replaces = intent.get("replaces") if intent.get("token") == token else None
            if intent.get("token") == token:
                s["intent"] = None
            s.update(vast_id=new_id, want="running", start_requested_at=now, waiting_since=now)
            s["replacements"] = [
                *[t for t in s.get("replacements", []) if now - float(t) < 3600.0],
                *([now] if replaces is not None else []),
            ]
            rec = _note(s["records"], new_id, now, InstanceState.STARTING, None, self.logical_id)
            rec.update(offer_id=offer_id, label=self.settings.label, gpu_name=gpu_name, rental_token=token)
            if price is not None:
                rec["price_per_hour"] = price
            if replaces is not None and replaces != new_id:
                s["to_destroy"] = sorted({*s["to_destroy"], int(replaces)})
                old = s["records"].get(str(replaces))
                if old is not None:
                    old["replaced_by"] = new_id

        await self._mutate(adopt)
        self._forget(None)
        log.info("%s is now vast instance %s", self.logical_id, new_id)

    async def _destroy_leftovers(self) -> None:
        for vid in await self._mutate(lambda s: list(s["to_destroy"])):
            try:
                await self._destroy(int(vid))
            except ProviderError as exc:
                log.warning("could not destroy replaced instance %s yet (%s); the reaper retries", vid, exc.message)

    async def _reconcile_intent(self, state: dict[str, Any]) -> dict[str, Any]:
        """A create may have been sent whose answer we never got: find it by its token, or expire it."""
        intent = state.get("intent") or {}
        now = self._clock.now()
        if intent.get("state") != "sending":
            if intent and now - float(intent.get("at", 0)) > _SEARCHING_STALE_S:
                await self._mutate(
                    lambda s: (
                        s.update(intent=None) if (s.get("intent") or {}).get("token") == intent.get("token") else None
                    )
                )
            return state
        rows = await self.client.list_instances({"label": {"in": [self.settings.label]}})
        found = [r for r in rows if extra_env_of(r).get(INTENT_ENV) == intent.get("token")]
        if found:
            row = found[0]
            await self._adopt(
                _vast_id(row),
                str(intent["token"]),
                intent.get("offer_id"),
                float(row["dph_total"]) if row.get("dph_total") is not None else None,
                row.get("gpu_name"),
            )
            await self._destroy_leftovers()
        elif now - float(intent.get("at", 0)) > self.settings.restart_deadline_s:
            log.warning("create %s for %s never appeared: forgetting it", intent.get("token"), self.logical_id)
            await self._mutate(
                lambda s: s.update(intent=None) if (s.get("intent") or {}).get("token") == intent.get("token") else None
            )
        return await self._mutate(lambda s: json.loads(json.dumps(s)))

    async def aclose(self) -> None:
        """Nothing to close unless an ``httpx.AsyncClient`` was passed in (its owner closes it)."""

    async def __aenter__(self) -> VastProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def build_vast_provider(
    settings: VastSettings | None = None,
    *,
    logical_id: str = "vast-1",
    state_dir: Path | None = None,
    agent_env: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    http: httpx.AsyncClient | None = None,
    clock: Clock | None = None,
    observe_ttl_s: float = 1.0,
) -> VastProvider:
    """The provider the control plane and ``gpuq offers/instances`` use.

    ``agent_env`` is what a rented box's agent needs (``GPUQ_AGENT_SECRET``, ``GPUQ_AGENT_READY_URL``,
    …); it goes into the create request's env, never into a log.
    """
    settings = settings or VastSettings()
    directory = state_dir or settings.state_dir or Path(".gpuq") / "vast"
    policy = retry or RetryPolicy(max_attempts=settings.max_attempts, timeout_s=settings.request_timeout_s)
    client = VastClient(settings.api_key.get_secret_value(), settings.url, retry=policy, http=http)
    return VastProvider(
        settings,
        logical_id=logical_id,
        state_dir=directory,
        client=client,
        agent_env=agent_env,
        clock=clock,
        observe_ttl_s=observe_ttl_s,
    )
