"""Settings: one pydantic model per component, read from ``GPUQ_*`` environment variables.

Build them once at the edge (a function's module, the agent's ``__main__``, the CLI) and pass
them in; nothing else reads ``os.environ``. Every field is listed in the README's table.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "AgentSettings",
    "BlobSettings",
    "ClientSettings",
    "ControlPlaneSettings",
    "LogSettings",
    "OvhSettings",
    "VastSelfStopSettings",
    "VastSettings",
    "split_csv",
]

KIB = 1024
MIB = 1024 * KIB


def split_csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


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
    callback_allow_hosts: str = Field(
        "", description="Hosts allowed as callback targets despite the private-address rule (dev: 127.0.0.1,localhost)."
    )
    callback_allow_http: bool = Field(
        False, description="Allow plain-http callback URLs (dev); production needs https."
    )
    rate_limit_per_min: float = Field(
        100.0,
        description="Requests per minute per API key (and for the trigger "
        "token), per functions process; over it: 429 with Retry-After.",
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
    instance_id: str = Field("local-1", description="The GPU box this control plane drives.")
    ollama_url: str = Field("http://127.0.0.1:11434", description="Model server the local provider's agent talks to.")
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
    lost_task_after_s: float = Field(
        120.0,
        description="A waiting job with no dispatch for this long past its "
        "due time is re-dispatched by the reaper (its task was lost).",
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
        return self.data_dir / "gpuq.db"


class AgentSettings(BaseSettings):
    """The agent on the GPU box."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_AGENT_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address the agent listens on.")
    port: int = Field(8000, description="Port the agent listens on (the container port on Vast).")
    secret: str = Field("", description="Authenticates the control plane's calls (GPUQ_AGENT_SECRET).")
    instance_id: str = Field("", description="This box's id at its provider.")
    provider: Literal["local", "vast", "none"] = Field("local", description="How the agent stops its own box.")
    ollama_url: str = Field("http://127.0.0.1:11434", description="The model server on the box.")
    preload_models: str = Field("llama3.2:1b", description="Models pulled if missing and loaded before ready.")
    idle_policy: Literal["immediate", "fixed", "break-even", "randomized", "adaptive"] = Field(
        "break-even", description="When the idle box stops itself (see 'Cost and idle policy')."
    )
    idle_grace_s: float = Field(60.0, description="Keep-warm seconds of the 'fixed' policy.")
    idle_cold_start_s: float = Field(
        120.0,
        description="Cold-start estimate until the control plane has measured "
        "one (it sends its estimate with each job).",
    )
    idle_price_per_hour: float = Field(0.5, description="The box's $/h until the control plane sends the provider's.")
    idle_wait_value_per_hour: float = Field(
        0.0, description="$ value of one hour of one job waiting; raises the break-even horizon."
    )
    idle_max_keep_warm_s: float = Field(3600.0, description="Upper bound on any policy's keep-warm time.")
    ready_url: str = Field("", description="Where to announce readiness (the trigger function).")
    max_concurrent_jobs: int = Field(4, description="Jobs generating at once; more are refused (503 agent_busy).")
    report_interval_s: float = Field(
        0.25, description="Batching period of progress reports (one request per box per tick)."
    )
    local_state_dir: Path = Field(Path(".gpuq/instances"), description="Local provider's state folder.")


class BlobSettings(BaseSettings):
    """Where large outputs go. ``GPUQ_BLOB_*`` environment variables; no bucket = outputs stay inline."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_BLOB_", extra="ignore")

    bucket: str = Field("", description="Bucket for large outputs; empty keeps every output in the job store.")
    endpoint_url: str = Field(
        "",
        description="S3 API endpoint: empty for AWS; https://storage.googleapis.com "
        "(GCS interoperability), https://<account>.r2.cloudflarestorage.com (R2), "
        "http://127.0.0.1:9000 (MinIO).",
    )
    region: str = Field("us-east-1", description="Signing region (R2: auto; GCS: auto or the bucket's region).")
    access_key_id: str = Field("", description="Access key (GCS: an HMAC key). Empty: boto3's default chain.")
    secret_access_key: str = Field("", description="Secret of the access key.")
    prefix: str = Field("gpuq/outputs", description="Key prefix of the output objects.")
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="Bucket in the path or the host name (MinIO and moto: path)."
    )
    checksums: Literal["when_required", "when_supported"] = Field(
        "when_required",
        description="boto3's request checksums. when_supported (its default since 1.36) "
        "sends headers GCS interoperability and some S3 clones refuse.",
    )
    inline_max_bytes: int = Field(256 * KIB, description="Outputs up to this size stay in the job store.")
    presign_over_bytes: int = Field(
        8 * MIB, description="Outputs over this size are answered with a presigned URL instead of the text."
    )
    presign_ttl_s: int = Field(3600, description="Validity of a presigned output URL.")
    timeout_s: float = Field(10.0, description="Connect and read timeout of each bucket call.")

    def enabled(self) -> bool:
        return bool(self.bucket)


class OvhSettings(BaseSettings):
    """The OVH AI Deploy box. ``OVH_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="OVH_", extra="ignore")

    cli: str = Field("ovhai", description="The ovhai executable (name on PATH or path).")
    token: str = Field(
        "", description="AI token the CLI authenticates with (--token); empty: the CLI's own login (ovhai login)."
    )
    deployment: str = Field(
        "default", description="Value of the 'gpuq' label on every app this deployment owns; list() returns only those."
    )
    app_name: str = Field("gpuq-box-1", description="Name (and gpuq-instance label) of the app create() makes.")
    image: str = Field("", description="The agent image (infra/agent/Dockerfile), e.g. ghcr.io/you/gpuq-agent:1.")
    region: str = Field("GRA", description="Object storage region/alias of the volumes (GRA, BHS…).")
    flavor: str = Field(
        "l4-1-gpu",
        description="Resource flavor: sets the GPU model, CPU and memory "
        "(memory is not set separately on AI Deploy). `ovhai capabilities flavor list`.",
    )
    gpu: int = Field(1, description="GPUs (of the flavor's model). 0 with cpu > 0 for a CPU-only app.")
    cpu: int = Field(0, description="CPUs, for CPU flavors only (0: not passed).")
    http_port: int = Field(8000, description="Container port of the agent (the app's default HTTP port).")
    unsecure_http: bool = Field(
        True,
        description="Serve the app URL without OVH authentication: the agent "
        "authenticates every control-plane call itself (signed requests).",
    )
    app_token: str = Field(
        "",
        description="When unsecure_http is false: an AI token scoped to the app's "
        "labels, sent as Authorization: Bearer to reach the agent.",
    )
    app_basic_auth: str = Field(
        "",
        description="When unsecure_http is false and no app_token: 'user:password' "
        "of an AI Platform user, sent as Authorization: Basic.",
    )
    model_bucket: str = Field(
        "",
        description="Object storage container mounted as Ollama's model cache, so "
        "models are pulled once, not on every start.",
    )
    model_mount: str = Field("/root/.ollama", description="Where the model cache volume is mounted.")
    preload_models: str = Field("llama3.2:1b", description="Models the box pulls and loads on start.")
    agent_env: str = Field(
        "",
        description="Extra KEY=VALUE pairs (comma-separated) for the agent's "
        "environment, e.g. GPUQ_AGENT_READY_URL=https://…/trigger.",
    )
    timeout_s: float = Field(60.0, description="Time limit of one ovhai call.")
    stop_confirm_s: float = Field(180.0, description="How long stop() waits to see the app STOPPED.")
    poll_s: float = Field(2.0, description="Polling period while confirming a stop.")
    price_per_hour: float = Field(0.0, description="$/h of the flavor, for cost accounting (informational).")


class LogSettings(BaseSettings):
    """Logging of every component (the functions, the agent)."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_LOG_", extra="ignore")

    level: str = Field("INFO", description="Log level of the functions and the agent (DEBUG, INFO, WARNING…).")


class ClientSettings(BaseSettings):
    """The ``gpuq`` command line client and the dev stack it starts."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_", extra="ignore")

    url: str = Field("http://127.0.0.1:8080", description="Where `gpuq submit/status/cancel` send requests.")
    api_key: str = Field("", description="API key for the CLI (default: first of GPUQ_API_KEYS, then the dev key).")
    data_dir: Path = Field(Path(".gpuq"), description="Where `gpuq dev` writes its dev API key.")
    ollama_url: str = Field(
        "",
        validation_alias="OLLAMA_URL",
        description="A real Ollama for `gpuq dev` and `gpuq demo` instead of the stand-in.",
    )
    api_keys: str = Field("", description="The jobs API's keys: the CLI sends the first; `gpuq dev` serves them.")
    vastai_api_key: str = Field(
        "", validation_alias="VASTAI_API_KEY", description="`gpuq dev --provider vast-fake`: the fake Vast API's key."
    )


class VastSettings(BaseSettings):
    """The Vast.ai provider (read by the control plane and ``gpuq offers/instances``). No prefix:
    the names are Vast's own (``VAST_URL``) or ``VASTAI_*``."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    api_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias="VASTAI_API_KEY",
        description="Vast.ai account API key (control plane only). Sent only as a Bearer header; never logged.",
    )
    url: str = Field(
        default="https://console.vast.ai",
        validation_alias="VAST_URL",
        description="Vast.ai API base URL (a fake Vast in dev/tests).",
    )
    instance_id: str = Field(
        default="",
        validation_alias="VASTAI_INSTANCE_ID",
        description="An existing Vast instance to drive; empty = rent one from offers.",
    )
    preferred_gpus: str = Field(
        default="",
        validation_alias="VASTAI_PREFERRED_GPUS",
        description='Comma-separated GPU names to rent ("RTX 4090,RTX_3090"); empty = any.',
    )
    min_vram_gb: float | None = Field(
        default=None, validation_alias="VASTAI_MIN_VRAM_GB", description="Minimum VRAM per GPU in GB."
    )
    max_bid_per_hour: float | None = Field(
        default=None,
        validation_alias="VASTAI_MAX_BID_PER_HOUR",
        description="Most $/h (dph_total, on-demand) a rented box may cost.",
    )
    default_disk_gb: float = Field(
        default=40.0,
        validation_alias="VASTAI_DEFAULT_DISK_GB",
        description="Disk of a rented box in GB (model weights live here).",
    )
    default_image: str = Field(
        default="",
        validation_alias="VASTAI_DEFAULT_IMAGE",
        description="Docker image of a rented box: Ollama + the gpuq agent "
        "(infra/agent/Dockerfile, pushed to your registry). Required to rent.",
    )
    template_ids: str = Field(
        default="",
        validation_alias="VASTAI_TEMPLATE_IDS",
        description="Comma-separated Vast template hash ids; the first one is the base "
        "of every create (image optional then).",
    )
    onstart: str = Field(
        default="bash /opt/gpuq/onstart.sh",  # infra/agent/Dockerfile's idempotent start-up script
        validation_alias="VASTAI_ONSTART",
        description="On-start command of a rented box (starts Ollama and the agent).",
    )
    runtype: str = Field(
        default="ssh",
        validation_alias="VASTAI_RUNTYPE",
        description="Vast launch mode: ssh (runs the on-start command) or args (image entrypoint).",
    )
    agent_port: int = Field(
        default=8000,
        validation_alias="VASTAI_AGENT_PORT",
        description="The agent's container port; its public port is read from the instance.",
    )
    restart_deadline_s: float = Field(
        default=120.0,
        validation_alias="VASTAI_RESTART_DEADLINE_S",
        description="A start not running by then (stuck scheduling) is replaced.",
    )
    load_deadline_s: float = Field(
        default=900.0,
        validation_alias="VASTAI_LOAD_DEADLINE_S",
        description="A box still loading (image pull) after this long is replaced.",
    )
    max_replacements_per_hour: int = Field(
        default=3,
        validation_alias="VASTAI_MAX_REPLACEMENTS_PER_HOUR",
        description="Replacement rentals allowed per hour before giving up.",
    )
    stop_mode: Literal["stop", "destroy"] = Field(
        default="stop",
        validation_alias="VASTAI_STOP_MODE",
        description="stop keeps weights on disk (storage still billed); destroy ends all billing.",
    )
    destroy_stopped_after_s: float = Field(
        default=86400.0,
        validation_alias="VASTAI_DESTROY_STOPPED_AFTER_S",
        description="reap_stopped destroys boxes stopped longer than this.",
    )
    label: str = Field(
        default="gpuq",
        validation_alias="VASTAI_LABEL",
        description="Label marking the instances this deployment owns.",
    )
    min_reliability: float | None = Field(
        default=0.95,
        validation_alias="VASTAI_MIN_RELIABILITY",
        description="Minimum machine reliability (0..1) of a rented box.",
    )
    num_gpus: int = Field(default=1, validation_alias="VASTAI_NUM_GPUS", description="GPUs per rented box.")
    verified_only: bool = Field(
        default=True, validation_alias="VASTAI_VERIFIED_ONLY", description="Rent verified machines only."
    )
    max_attempts: int = Field(
        default=5,
        validation_alias="VASTAI_MAX_ATTEMPTS",
        description="Calls per request at most (429/5xx/timeouts are retried).",
    )
    request_timeout_s: float = Field(
        default=20.0,
        validation_alias="VASTAI_REQUEST_TIMEOUT_S",
        description="Timeout of one call to the Vast API.",
    )
    state_dir: Path | None = Field(
        default=None,
        validation_alias="VASTAI_STATE_DIR",
        description="Where the logical box's state file lives (default GPUQ_DATA_DIR/vast).",
    )

    def gpu_list(self) -> list[str]:
        return split_csv(self.preferred_gpus)

    def template_list(self) -> list[str]:
        return split_csv(self.template_ids)


class VastSelfStopSettings(BaseSettings):
    """What Vast puts in every container, plus how hard to try."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    container_id: str = Field(default="", validation_alias="CONTAINER_ID", description="This instance's Vast id.")
    container_api_key: SecretStr = Field(
        default=SecretStr(""),
        validation_alias="CONTAINER_API_KEY",
        description="Key that can manage only this instance.",
    )
    vast_url: str = Field(
        default="https://console.vast.ai", validation_alias="VAST_URL", description="Vast API base URL."
    )
    cli_path: str = Field(
        default="vastai",
        validation_alias="GPUQ_AGENT_VASTAI_CLI",
        description="The vastai CLI (a name on PATH or a path); missing = REST only.",
    )
    cli_timeout_s: float = Field(
        default=60.0,
        validation_alias="GPUQ_AGENT_VASTAI_CLI_TIMEOUT_S",
        description="The CLI is killed after this long.",
    )
    confirm_s: float = Field(
        default=5.0,
        validation_alias="GPUQ_AGENT_VAST_CONFIRM_S",
        description="How long a GET may take to show the stop before it counts as failed.",
    )
    rest_attempts: int = Field(
        default=4,
        validation_alias="GPUQ_AGENT_VAST_REST_ATTEMPTS",
        description="REST stop tries after the CLI (each confirmed with a GET).",
    )
    backoff_s: float = Field(
        default=1.0,
        validation_alias="GPUQ_AGENT_VAST_BACKOFF_S",
        description="First delay between REST tries; doubles.",
    )
