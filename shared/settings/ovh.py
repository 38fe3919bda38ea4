"""The OVH AI Deploy provider's settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["OvhSettings"]


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
