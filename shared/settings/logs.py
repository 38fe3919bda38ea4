"""Logging of every component."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["LogSettings"]


class LogSettings(BaseSettings):
    """Logging of every component (the functions, the agent)."""

    model_config = SettingsConfigDict(env_prefix="GPUQ_LOG_", extra="ignore")

    level: str = Field("INFO", description="Log level of the functions and the agent (DEBUG, INFO, WARNING…).")
    format: Literal["text", "json"] = Field(
        "text",
        description="text: one readable line per record (dev); json: one JSON object per line, events with "
        "their envelope (production: `gpuq deploy` sets it, and boxes get the control plane's).",
    )
