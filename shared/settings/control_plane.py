"""The control plane's settings: the four functions and the dev stack."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings.values import split_csv

__all__ = ["ControlPlaneSettings"]


class ControlPlaneSettings(BaseSettings):
    """The four functions (enqueue, trigger, dispatch, reaper) and the dev stack."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_", extra="ignore")

    # --- who may call -------------------------------------------------------------------------
    api_keys: str = Field("", description="Comma-separated API keys for the jobs API (name:key or key).")
    trigger_token: str = Field("", description="Bearer token accepted by /trigger (seed-compatible).")
    reaper_token: str = Field("", description="Bearer token accepted by /reaper (dev; OIDC in production).")
    task_secret: str = Field("", description="HMAC secret our queue client signs dispatch tasks with.")
    agent_master_secret: str = Field(
        "",
        description="Master secret of control plane <-> agent signing; each box "
        "gets only HMAC(master, its instance id) as its GPUQ_AGENT_SECRET.",
    )
    job_token_secret: str = Field("", description="Secret for per-job, per-attempt agent report tokens.")
    webhook_secret: str = Field("", description="Callback signing secret, whsec_ + base64.")
    metrics_token: str = Field("", description="Bearer token of GET /metrics (an API key works too).")
    callback_allow_hosts: str = Field(
        "", description="Hosts allowed as callback targets despite the private-address rule (dev: 127.0.0.1,localhost)."
    )
    callback_allow_http: bool = Field(
        False, description="Allow plain-http callback URLs (dev); production needs https."
    )
    rate_limit_per_min: float = Field(
        100.0,
        description="Requests per minute per API key (and for the trigger "
        "token), for the whole deployment (a bucket in the store); over it: 429 with Retry-After.",
    )
    oidc_certs_url: str = Field(
        "https://www.googleapis.com/oauth2/v1/certs",
        description="Where Google's OIDC token signing certificates are fetched.",
    )
    scheduler_service_account: str = Field(
        "",
        description="Service account whose OIDC token Cloud Scheduler sends "
        "to the reaper (production; empty = reaper token).",
    )
    reaper_url: str = Field("", description="Audience of the scheduler's OIDC token; default PUBLIC_URL/reaper.")
    # --- where things are ---------------------------------------------------------------------
    store: Literal["sqlite", "firestore"] = Field(
        "sqlite",
        description="Job store: the embedded SQLite file, or "
        "Firestore (production; FIRESTORE_EMULATOR_HOST for its emulator).",
    )
    firestore_project: str = Field("", description="GCP project of the Firestore database (default: the ambient one).")
    firestore_database: str = Field("(default)", description="Firestore database id.")
    data_dir: Path = Field(Path(".gpuq"), description="SQLite file and logs of the embedded stack.")
    sqlite_file: str = Field("", description="The SQLite store's file (default DATA_DIR/gpuq.db).")
    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="Base URL of the functions (agents report here; tasks target PUBLIC_URL/dispatch).",
    )
    dispatch_url: str = Field("", description="URL Cloud Tasks calls; default PUBLIC_URL/dispatch.")
    tasks_emulator_host: str = Field("", description="host:port of a Cloud Tasks emulator; empty = real service.")
    tasks_project: str = Field("gpuq-dev", description="GCP project of the queues.")
    tasks_location: str = Field("us-central1", description="GCP region of the queues.")
    job_queue: str = Field("gpuq-jobs", description="Queue of job dispatch tasks.")
    callback_queue: str = Field("gpuq-callbacks", description="Queue of callback delivery tasks.")
    lease_queue: str = Field("gpuq-leases", description="Queue of lease checks of running jobs.")
    tasks_service_account: str = Field("", description="Service account for OIDC tokens on tasks (production).")
    # --- the box ------------------------------------------------------------------------------
    provider: Literal["local", "vast", "ovh"] = Field("local", description="Compute provider driving the box.")
    instance_id: str = Field("local-1", description="The GPU box this control plane drives (no pools file).")
    pools_file: str = Field(
        "", description="TOML file declaring the pools (docs/pools.md); empty = one pool of one box."
    )
    # --- the OpenAI front door ------------------------------------------------------------------
    openai_hold_s: float = Field(540.0, gt=0, le=3600, description="How long a non-streaming OpenAI request is held.")
    openai_retry_after_s: float = Field(20.0, ge=1, le=60, description="Retry-After of a held request's 503.")
    openai_max_held: int = Field(24, ge=1, description="OpenAI requests one functions process holds at once.")
    # --- the dashboard (/ui) ------------------------------------------------------------------
    ui_enabled: bool = Field(True, description="Serve the dashboard at /ui and accept its session cookie.")
    ui_session_s: float = Field(
        43200.0, gt=0, le=2_592_000, description="How long a dashboard login lasts (the session cookie's lifetime)."
    )
    ui_refresh_s: float = Field(
        3.0,
        ge=0.5,
        le=300,
        description="How often the open dashboard refreshes its panels (each refresh is a request).",
    )
    ollama_url: str = Field("http://127.0.0.1:11434", description="Model server the local provider's agent talks to.")
    openai_backend_url: str = Field(
        "http://127.0.0.1:8001",
        description="OpenAI-compatible model server the local boxes of an openai pool talk to (no backend_url).",
    )
    agent_preload_models: str = Field("llama3.2:1b", description="Models the agent loads before it reports ready.")
    agent_idle_grace_s: float = Field(60.0, description="Keep-warm seconds of the local boxes' 'fixed' idle policy.")
    agent_idle_policy: str = Field(
        "fixed",
        description="Idle policy of the local provider's boxes (dev: a fixed "
        "grace, so demos and tests are predictable).",
    )
    # --- jobs ---------------------------------------------------------------------------------
    default_max_queue_s: float = Field(3600.0, description="Default time a job may wait for a GPU.")
    default_timeout_s: float = Field(600.0, description="Default execution time limit.")
    max_attempts: int = Field(3, description="Attempts before a job fails for good.")
    model_server_retry_s: float = Field(5.0, description="Delay before re-driving a lost attempt; doubles.")
    lease_s: float = Field(
        60.0, description="How long a job handed to an agent stays leased without a progress report."
    )
    snooze_s: float = Field(2.0, description="Re-check period of a dispatch task while the box boots.")
    max_body_bytes: int = Field(1_048_576, description="Largest request body accepted.")
    callback_max_tries: int = Field(20, description="Delivery tries per callback event.")
    callback_backoff_s: float = Field(2.0, description="First retry delay; doubles up to 1 hour.")
    callback_timeout_s: float = Field(10.0, description="Per-try timeout of a callback POST.")
    reaper_idle_limit_s: float = Field(
        300.0, description="Reaper stops a box with no job for this long (backstop to the agent's own idle stop)."
    )
    budget_daily_usd: float = Field(
        0.0,
        description="Daily (UTC) spending cap in $; 0 = none. At the cap the job "
        "queue pauses and new jobs wait (status reason budget_exceeded).",
    )
    budget_monthly_usd: float = Field(0.0, description="Monthly (UTC) spending cap in $; 0 = none.")
    budget_warn_fraction: float = Field(0.8, description="Fraction of a cap at which a warning is logged.")
    local_price_per_hour: float = Field(
        0.0, description="What the local provider's boxes 'cost' ($/h), to exercise cost accounting and budgets in dev."
    )
    box_heartbeat_ttl_s: float = Field(
        300.0,
        description="A box with jobs whose agent has not reported for this long is lost: stopped, jobs re-driven.",
    )
    box_failed_cooldown_s: float = Field(
        300.0,
        ge=0,
        description="A box whose model server could not come up is not started again for this long "
        "(its pool starts another of its boxes meanwhile).",
    )
    lost_task_after_s: float = Field(
        120.0,
        description="A waiting job with no dispatch for this long past its "
        "due time is re-dispatched by the reaper (its task was lost).",
    )
    # --- events (docs/events.md) --------------------------------------------------------------
    events_enabled: bool = Field(
        True,
        description="Keep every event in the store (GET /v1/events) and feed the sinks; false: state changes "
        "are only logged (to measure what events cost).",
    )
    event_retention_s: float = Field(
        7 * 86400.0, gt=0, description="How long events stay readable in the store (GET /v1/events)."
    )
    event_webhook_url: str = Field("", description="Account-level event webhook (Slack/PagerDuty relay); empty: off.")
    event_webhook_types: str = Field(
        "", description="Comma-separated event types or prefixes ending in '.' sent to the webhook; empty: all."
    )
    event_webhook_secret: str = Field(
        "", description="Signing secret of the event webhook (whsec_ + base64); empty: GPUQ_WEBHOOK_SECRET."
    )
    event_pubsub_topic: str = Field(
        "", description="Pub/Sub topic events are published to (projects/P/topics/T); empty: off."
    )

    def api_key_map(self) -> dict[str, str]:
        """sha256 hex of each key → its name.

        Entries: ``name:sha256:<hex>`` (only the hash is stored: the way to configure production),
        ``name:key``, or a bare ``key`` (named ``key1``, ``key2``…). Remove an entry to revoke it.
        """
        out: dict[str, str] = {}
        for index, entry in enumerate(split_csv(self.api_keys), start=1):
            name, sep, rest = entry.partition(":")
            if not sep:
                name, rest = f"key{index}", entry
            kind, sep2, digest = rest.partition(":")
            out[digest.lower() if sep2 and kind == "sha256" else hashlib.sha256(rest.encode()).hexdigest()] = name
        return out

    def reaper_audience(self) -> str:
        return self.reaper_url or self.public_url.rstrip("/") + "/reaper"

    def dispatch_target(self) -> str:
        return self.dispatch_url or self.public_url.rstrip("/") + "/dispatch"

    def sqlite_path(self) -> Path:
        return Path(self.sqlite_file) if self.sqlite_file else self.data_dir / "gpuq.db"
