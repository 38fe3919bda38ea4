"""Everything one running stand-in knows: its models and their load state, the faults armed, the
counters ``/__fake__/stats`` reports. It lives on the server's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import web

from shared.fakes.ollama.catalogue import Model, spec_for
from shared.fakes.ollama.config import FAULT_FIELDS, LIVE_CONFIG_FIELDS, FakeFaults, FakeOllamaConfig, LiveUpdate
from shared.fakes.ollama.goformat import FOREVER_NS
from shared.fakes.ollama.text import canonical_model_name

__all__ = ["STATE", "FakeOllamaState", "Stats", "TokenFault", "get_state"]

TokenFault = tuple[Literal["fail", "stall", "error"], int, str]
"""What a generation does at which token, and the message it fails with."""


@dataclass
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    generations_started: int = 0
    generations_by_path: Counter[str] = field(default_factory=Counter)
    generations_by_prompt: Counter[str] = field(default_factory=Counter)
    generations_completed: int = 0
    generations_interrupted: int = 0
    model_loads: int = 0
    model_unloads: int = 0
    pulls_completed: int = 0
    rejected_queue_full: int = 0
    faults_fired: int = 0

    def to_json(self, inflight: int, active: int) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "generations_started": self.generations_started,
            "generations_by_path": dict(self.generations_by_path),
            "generations_by_prompt": dict(self.generations_by_prompt),
            "generations_completed": self.generations_completed,
            "generations_interrupted": self.generations_interrupted,
            "model_loads": self.model_loads,
            "model_unloads": self.model_unloads,
            "pulls_completed": self.pulls_completed,
            "rejected_queue_full": self.rejected_queue_full,
            "faults_fired": self.faults_fired,
            "inflight": inflight,
            "active_generations": active,
        }


class FakeOllamaState:
    """Everything one server instance knows. Lives on the server's event loop."""

    def __init__(self, config: FakeOllamaConfig) -> None:
        self.config = config.model_copy(deep=True)
        self.faults = self.config.faults.model_copy()
        self.stats = Stats()
        self.inflight = 0
        self.active = 0
        self.shutting_down = asyncio.Event()
        now = time.time_ns()
        self.models: dict[str, Model] = {}
        for i, name in enumerate(self.config.models):
            self.add_model(name, now - i * 1_000_000_000)

    # models -------------------------------------------------------------------------------

    def add_model(self, name: str, modified_at_ns: int | None = None) -> Model:
        canonical = canonical_model_name(name)
        key = canonical.lower()
        existing = self.models.get(key)
        stamp = time.time_ns() if modified_at_ns is None else modified_at_ns
        if existing is not None:
            existing.modified_at_ns = stamp
            return existing
        model = Model(name=canonical, spec=spec_for(canonical), modified_at_ns=stamp)
        self.models[key] = model
        return model

    def lookup(self, name: str) -> Model | None:
        return self.models.get(canonical_model_name(name).lower())

    def _expire(self, model: Model, now_ns: int) -> None:
        if model.loaded and model.refcount == 0 and model.expires_at_ns <= now_ns:
            model.loaded = False
            self.stats.model_unloads += 1

    def loaded_models(self) -> list[Model]:
        now = time.time_ns()
        for model in self.models.values():
            self._expire(model, now)
        return [m for m in self.models.values() if m.loaded]

    def default_keep_alive_ns(self) -> int:
        ka = self.config.default_keep_alive_s
        return FOREVER_NS if ka < 0 else int(ka * 1_000_000_000)

    async def acquire(self, model: Model, keep_alive_ns: int) -> None:
        """Pin the model for one request and wait until it is loaded."""
        self._expire(model, time.time_ns())
        model.refcount += 1
        model.keep_alive_ns = keep_alive_ns
        if model.loaded:
            return
        if model.loading is None:
            model.loading = asyncio.create_task(self._load(model))
        try:
            await asyncio.shield(model.loading)
        except BaseException:
            self.release(model)
            raise

    async def _load(self, model: Model) -> None:
        try:
            if self.config.load_delay_s > 0:
                await asyncio.sleep(self.config.load_delay_s)
            model.loaded = True
            self.stats.model_loads += 1
        finally:
            model.loading = None

    def release(self, model: Model) -> None:
        model.refcount -= 1
        if model.refcount > 0 or not model.loaded:
            return
        if model.keep_alive_ns == 0:
            model.loaded = False
            self.stats.model_unloads += 1
        else:
            model.expires_at_ns = min(time.time_ns() + model.keep_alive_ns, FOREVER_NS)

    def unload(self, model: Model) -> None:
        model.keep_alive_ns = 0
        if model.loaded and model.refcount == 0:
            model.loaded = False
            self.stats.model_unloads += 1

    def slots_for(self, model: Model) -> asyncio.Semaphore | None:
        n = self.config.num_parallel
        if n <= 0:
            return None
        if model.slots is None or model.slots[0] != n:
            model.slots = (n, asyncio.Semaphore(n))
        return model.slots[1]

    # faults -------------------------------------------------------------------------------

    def _consume_fault(self) -> FakeFaults:
        fired = self.faults.model_copy()
        self.stats.faults_fired += 1
        if self.faults.times > 0:
            self.faults.times -= 1
            if self.faults.times == 0:
                self.faults = FakeFaults()
        return fired

    def take_error_fault(self) -> tuple[int, str] | None:
        f = self.faults
        if not f.armed() or f.error_status is None:
            return None
        fired = self._consume_fault()
        assert fired.error_status is not None
        return fired.error_status, fired.message_for(fired.error_status)

    def take_token_fault(self) -> TokenFault | None:
        f = self.faults
        token_fault = f.token_fault()
        if not f.armed() or f.error_status is not None or token_fault is None:
            return None
        fired = self._consume_fault()
        return token_fault[0], token_fault[1], fired.message_for(500)

    @contextlib.contextmanager
    def generating(self, path: str, prompt_key: str) -> Iterator[TokenFault | None]:
        """One generation while the block runs: counted (by path and prompt), active, and handed the
        token fault armed for it, if any."""
        fault = self.take_token_fault()
        self.stats.generations_started += 1
        self.stats.generations_by_path[path] += 1
        self.stats.generations_by_prompt[prompt_key] += 1
        self.active += 1
        try:
            yield fault
        finally:
            self.active -= 1

    def apply_update(self, update: LiveUpdate) -> None:
        if update.clear:
            self.faults = FakeFaults()
        given = update.model_fields_set
        fault_changes = {k: getattr(update, k) for k in given & FAULT_FIELDS}
        if fault_changes:
            merged = self.faults.model_dump() | fault_changes
            if merged.get("times") is None:
                merged["times"] = 1
            if "times" not in fault_changes and self.faults.times == 0:
                merged["times"] = 1
            self.faults = FakeFaults.model_validate(merged)
        for key in given & LIVE_CONFIG_FIELDS:
            value = getattr(update, key)
            if value is not None:
                setattr(self.config, key, value)

    def control_view(self) -> dict[str, Any]:
        return {
            "faults": self.faults.model_dump(),
            "config": {k: getattr(self.config, k) for k in sorted(LIVE_CONFIG_FIELDS)},
        }


STATE: Final = web.AppKey("fake_ollama_state", FakeOllamaState)


def get_state(app: web.Application) -> FakeOllamaState:
    """The live state of an app made by :func:`build_app` (use only from its event loop)."""
    return app[STATE]
