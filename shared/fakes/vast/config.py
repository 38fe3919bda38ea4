"""How one fake is set up: its settings (key, offers, instance command, delays, rate limits) and the
faults it can inject; ``ENDPOINTS`` names the API endpoints that limits, faults and counters refer to."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.fakes.vast.offers import DEFAULT_OFFERS, FakeOffer

__all__ = ["ENDPOINTS", "FakeVastConfig", "FakeVastFaults"]


ENDPOINTS: Final = ("gpu_names", "user", "show", "list", "list_v0", "filters", "manage", "destroy", "bundles", "create")


class FakeVastFaults(BaseModel):
    """Faults to inject. Counters are consumed one per matching request; 0 = off."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    stuck_starts: int = Field(
        default=0, ge=0, description="next N starts of a stopped instance stay scheduling (GPU taken)"
    )
    error_burst: int = Field(default=0, ge=0, description="next N API calls answer error_status")
    error_status: int = Field(default=503, ge=500, le=599)
    error_endpoints: list[str] = Field(default_factory=list, description="endpoint names; empty = every endpoint")
    rate_limit_burst: int = Field(default=0, ge=0, description="next N API calls answer 429 (a 429 storm)")
    rate_limit_endpoints: list[str] = Field(default_factory=list)
    auth_error_status: Literal[401, 403, 404] | None = Field(
        default=None, description="every authenticated call fails as with a revoked key"
    )
    stop_fails: int = Field(default=0, ge=0, description="next N stop requests answer 200 {success: false}")
    create_lost_responses: int = Field(default=0, ge=0, description="next N creates run but answer 504 (lost answer)")


class FakeVastConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    api_key: str = "fake-vast-key"
    offers: list[FakeOffer] = Field(default_factory=lambda: list(DEFAULT_OFFERS))
    command: list[str] = Field(default_factory=lambda: [sys.executable, "-m", "agent"])
    image_commands: dict[str, list[str]] = Field(default_factory=dict, description="image → command override")
    extra_env: dict[str, str] = Field(default_factory=dict, description="added to every instance process")
    inherit_env: bool = True
    workdir: Path | None = None
    log_dir: Path | None = None
    schedule_delay_s: float = Field(default=0.2, ge=0)
    loading_delay_s: float = Field(default=0.5, ge=0)
    restart_loading_delay_s: float = Field(default=0.2, ge=0)
    stop_delay_s: float = Field(default=0.3, ge=0)
    stop_grace_s: float = Field(default=5.0, ge=0)
    rate_limits_s: dict[str, float] = Field(default_factory=dict, description="endpoint name → min interval per key")
    rate_limit_text_every: int = Field(default=2, ge=1)
    bad_key_status: Literal[401, 403, 404] = 401
    public_ipaddr: str = "127.0.0.1"
    first_instance_id: int = 7_000_001
    faults: FakeVastFaults = Field(default_factory=lambda: FakeVastFaults())
