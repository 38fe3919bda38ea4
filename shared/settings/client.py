"""The ``gpuq`` command line client's settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ClientSettings"]


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
