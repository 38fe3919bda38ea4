"""Pools: sets of interchangeable GPU boxes, each serving a list of models.

A pool names its provider, the models its boxes serve, how many boxes it may run (``min_boxes`` ..
``max_boxes``), how many jobs one box runs at once (``jobs_per_box``, Ollama's ``OLLAMA_NUM_PARALLEL``),
its idle policy, and the provider's own choices (Vast offer filters and price cap, or the ids of boxes
the operator rented). Pools are declared in one TOML file (``GPUQ_POOLS_FILE``)::

    [pools.small]
    provider = "vast"
    models = ["llama3.2:1b", "qwen2.5:0.5b"]
    max_boxes = 3
    jobs_per_box = 4
    backend = "ollama"              # or "openai": vLLM, llama-server, SGLang, TGI (docs/backends.md)
    [pools.small.vast]              # any VastSettings field, by name
    preferred_gpus = "RTX 4090,RTX 3090"
    max_bid_per_hour = 0.6

Without a file, today's single-box settings define one pool of one box (``GPUQ_PROVIDER``,
``GPUQ_INSTANCE_ID``, ``GPUQ_AGENT_PRELOAD_MODELS``), so existing set-ups keep working.

A pool's boxes have stable ids: the operator's ``instance_ids`` when given, else ``<pool>-1`` ..
``<pool>-<max_boxes>``. A job goes to the first pool that serves its model; a model no pool serves is
refused at submit (``422 model_not_served``) before anything is stored or started.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from shared.errors import ValidationFailed
from shared.settings import ControlPlaneSettings, VastSettings, split_csv

__all__ = ["ANY_MODEL", "PoolConfig", "Pools", "load_pools", "model_key", "parse_pools"]

ANY_MODEL = "*"
"""A pool whose models are ``["*"]`` serves whatever its model server has (the fallback pool without
preload models)."""

IdlePolicyName = Literal["immediate", "fixed", "break-even", "randomized", "adaptive"]


def model_key(model: str) -> str:
    """How Ollama names a model: ``llama3.2`` is ``llama3.2:latest``; names are case-insensitive."""
    name = model.strip().lower()
    return name if ":" in name else f"{name}:latest"


class PoolConfig(BaseModel):
    """One pool of interchangeable boxes (one ``[pools.<name>]`` table of the pools file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$", description="The pool's name (its boxes' id prefix).")
    provider: Literal["local", "vast", "ovh"] = Field("local", description="Compute provider of its boxes.")
    models: list[str] = Field(min_length=1, description='Models its boxes serve; ["*"] = whatever they have.')
    min_boxes: int = Field(0, ge=0, description="Boxes kept up even when idle.")
    max_boxes: int = Field(1, ge=1, le=64, description="Most boxes up at once.")
    jobs_per_box: int = Field(4, ge=1, le=256, description="Jobs one box runs at once (OLLAMA_NUM_PARALLEL).")
    idle_policy: IdlePolicyName = Field("break-even", description="When an idle box stops (shared/money/idle.py).")
    idle_grace_s: float = Field(60.0, ge=0, description="Keep-warm seconds of the 'fixed' idle policy.")
    cold_start_s: float = Field(120.0, gt=0, description="Cold-start estimate until one is measured.")
    pull_on_demand: bool = Field(
        False,
        description="The agent pulls a model its server lacks (billed to the job that asked); off: model_not_found.",
    )
    backend: Literal["ollama", "openai"] = Field(
        "ollama", description="The API its boxes' model server speaks: Ollama's, or OpenAI's (vLLM, llama-server, …)."
    )
    backend_url: str = Field(
        "", description="Where the model server listens on a box (GPUQ_AGENT_BACKEND_URL); empty: the box's default."
    )
    price_per_hour: float = Field(0.0, ge=0, description="What a local box 'costs' ($/h), for dev accounting.")
    instance_ids: list[str] = Field(
        default_factory=list, description="Boxes the operator rented (Vast ids, OVH app ids); empty = gpuq names them."
    )
    vast: dict[str, Any] = Field(default_factory=dict, description="VastSettings fields for this pool's rentals.")

    @field_validator("vast")
    @classmethod
    def _vast_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(VastSettings.model_fields) - {"api_key"})
        if unknown:
            raise ValueError(f"unknown Vast setting(s) {', '.join(unknown)}; see the VASTAI_* settings table")
        if "api_key" in value:
            raise ValueError("the Vast API key is a secret: set VASTAI_API_KEY, not the pools file")
        return value

    @model_validator(mode="after")
    def _backend(self) -> Self:
        if self.backend == "openai" and self.pull_on_demand:
            raise ValueError(
                "pull_on_demand needs the ollama backend: an OpenAI-compatible server serves its own models"
            )
        return self

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if self.min_boxes > self.max_boxes:
            raise ValueError(f"min_boxes ({self.min_boxes}) must be <= max_boxes ({self.max_boxes})")
        if self.instance_ids and len(self.instance_ids) < self.max_boxes:
            raise ValueError(f"max_boxes ({self.max_boxes}) is more than the {len(self.instance_ids)} instance_ids")
        return self

    def box_ids(self) -> list[str]:
        """The ids of every box this pool may run, in the order they are started."""
        if self.instance_ids:
            return list(self.instance_ids[: self.max_boxes])
        return [f"{self.name}-{i}" for i in range(1, self.max_boxes + 1)]

    def serves(self, model: str) -> bool:
        return ANY_MODEL in self.models or model_key(model) in {model_key(m) for m in self.models}

    def vast_settings(self, base: VastSettings) -> VastSettings:
        """The account's Vast settings with this pool's choices on top."""
        return base.model_copy(update=self.vast) if self.vast else base


@dataclass(frozen=True)
class Pools:
    """Every pool of the deployment, in declaration order (a model served twice goes to the first)."""

    pools: tuple[PoolConfig, ...]

    def __iter__(self) -> Iterator[PoolConfig]:
        return iter(self.pools)

    def get(self, name: str) -> PoolConfig | None:
        return next((p for p in self.pools if p.name == name), None)

    def for_model(self, model: str) -> PoolConfig | None:
        return next((p for p in self.pools if p.serves(model)), None)

    def of_box(self, box_id: str) -> PoolConfig | None:
        return next((p for p in self.pools if box_id in p.box_ids()), None)

    def served_models(self) -> list[tuple[str, str]]:
        """``(model, pool)`` for every model a pool names, in declaration order."""
        return [(m, p.name) for p in self.pools for m in p.models if m != ANY_MODEL]

    def route(self, model: str) -> PoolConfig:
        """The pool for a job's model; :class:`ValidationFailed` (422 ``model_not_served``) naming the served
        models when no pool serves it."""
        pool = self.for_model(model)
        if pool is None:
            served = ", ".join(sorted({m for m, _ in self.served_models()})) or "none"
            raise ValidationFailed(
                f"model {model!r} is not served by any pool (served: {served})", code="model_not_served"
            )
        return pool


def _fallback_pool(settings: ControlPlaneSettings) -> PoolConfig:
    """Today's single-box settings as one pool of one box."""
    models = split_csv(settings.agent_preload_models) or [ANY_MODEL]
    return PoolConfig.model_validate(
        {
            "name": "default",
            "provider": settings.provider,
            "models": models,
            "max_boxes": 1,
            "instance_ids": [settings.instance_id],
            "idle_policy": settings.agent_idle_policy,
            "idle_grace_s": settings.agent_idle_grace_s,
            "price_per_hour": settings.local_price_per_hour,
        }
    )


def parse_pools(text: str, *, source: str = "pools file") -> Pools:
    """Pools from TOML text (``[pools.<name>]`` tables); :class:`ValueError` says what is wrong and where."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: not valid TOML: {exc}") from None
    tables = data.get("pools")
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"{source}: declare at least one [pools.<name>] table")
    extra = sorted(set(data) - {"pools"})
    if extra:
        raise ValueError(f"{source}: unknown top-level key(s) {', '.join(extra)}")
    pools = []
    for name, table in tables.items():
        try:
            pools.append(PoolConfig.model_validate({**(table if isinstance(table, dict) else {}), "name": name}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{source}: pool {name!r}: {problems}") from None
    _check_distinct_boxes(pools, source)
    return Pools(tuple(pools))


def _check_distinct_boxes(pools: list[PoolConfig], source: str) -> None:
    seen: dict[str, str] = {}
    for pool in pools:
        for box in pool.box_ids():
            if box in seen:
                raise ValueError(f"{source}: box {box!r} is in pools {seen[box]!r} and {pool.name!r}")
            seen[box] = pool.name


def load_pools(settings: ControlPlaneSettings) -> Pools:
    """The pools of ``GPUQ_POOLS_FILE``, or the single fallback pool when it is unset."""
    if not settings.pools_file:
        return Pools((_fallback_pool(settings),))
    path = Path(settings.pools_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"GPUQ_POOLS_FILE={path}: {exc.strerror}") from None
    return parse_pools(text, source=str(path))
