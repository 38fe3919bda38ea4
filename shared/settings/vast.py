"""The Vast.ai provider's settings and what Vast puts in every container."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.settings.values import split_csv

__all__ = ["VastSelfStopSettings", "VastSettings"]


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
        description="Where a tool without a store keeps the box's state file (default GPUQ_DATA_DIR/vast).",
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
