"""The agent's settings (the service on the GPU box)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["AgentSettings"]


class AgentSettings(BaseSettings):
    """The agent on the GPU box."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_AGENT_", extra="ignore")

    host: str = Field("0.0.0.0", description="Address the agent listens on.")
    port: int = Field(8000, description="Port the agent listens on (the container port on Vast).")
    secret: str = Field("", description="Authenticates the control plane's calls (GPUQ_AGENT_SECRET).")
    metrics_token: str = Field("", description="Bearer token of GET /metrics (empty: /metrics answers 403).")
    instance_id: str = Field("", description="This box's id at its provider.")
    provider: Literal["local", "vast", "none"] = Field("local", description="How the agent stops its own box.")
    ollama_url: str = Field("http://127.0.0.1:11434", description="The model server on the box.")
    backend: Literal["ollama", "openai"] = Field(
        "ollama", description="The model server's API: Ollama's native one, or OpenAI's (vLLM, llama-server, …)."
    )
    backend_url: str = Field("", description="The model server's URL; empty: GPUQ_AGENT_OLLAMA_URL.")
    backend_api_key: str = Field("", description="Bearer token for an OpenAI-compatible server started with a key.")
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
    pull_on_demand: bool = Field(
        False, description="Pull a job's model through the model server when it lacks it (one pull per model)."
    )
    report_interval_s: float = Field(
        0.25, description="Batching period of progress reports (one request per box per tick)."
    )
    local_state_dir: Path = Field(Path(".gpuq/instances"), description="Local provider's state folder.")
    # The supervised model server (docs/model-server.md). Patterns: `|`-separated, case-sensitive substrings.
    server_command: str = Field(
        "",
        description="The model server the agent starts and supervises (`ollama serve`, `vllm serve …`), split as a "
        "shell would; empty: not supervised (the on-start script runs it).",
    )
    server_on_load: str = Field(
        "", description="A line containing one of these means the server is up (its API then confirms); empty: its API."
    )
    server_on_error: str = Field(
        "CUDA out of memory|CUDA error: out of memory|address already in use|error loading model|"
        "failed to load model|Failed to load model",
        description="A line containing one of these, while the server starts, means it cannot come up: box failed.",
    )
    server_on_info: str = Field(
        "Downloading|Loading|pulling",
        description="A line containing one of these, while the server starts, is the box's status reason.",
    )
    server_max_restarts: int = Field(3, ge=0, description="Restarts in a row of a server that exits; then failed.")
    server_restart_backoff_s: float = Field(
        1.0, ge=0, description="Wait before the first restart; doubled for each next one (at most 60 s)."
    )
    server_ready_timeout_s: float = Field(
        900.0, gt=0, description="Seconds from a server (re)start to up (download and load included); then failed."
    )

    def model_server_url(self) -> str:
        """``GPUQ_AGENT_BACKEND_URL``, or ``GPUQ_AGENT_OLLAMA_URL`` (the older name) when it is unset."""
        return self.backend_url or self.ollama_url
