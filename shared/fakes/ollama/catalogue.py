"""The model catalogue: what a model name stands for (family, size, quantization, layers), which names
are well formed, and a pulled model with its load state."""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Final

from shared.fakes.ollama.goformat import go_quote

__all__ = ["Model", "Spec", "model_not_found_error", "spec_for", "valid_model_name"]


def model_not_found_error(model: str) -> str:
    """The error text Ollama sends with a 404 for a model that is not pulled."""
    return f"model {go_quote(model)} not found, try pulling it first"


@dataclass(frozen=True)
class Spec:
    family: str
    parameter_size: str
    quantization: str
    size: int


_KNOWN: Final[dict[str, Spec]] = {
    "llama3.2:1b": Spec("llama", "1.2B", "Q8_0", 1_321_098_329),
    "llama3.2:3b": Spec("llama", "3.2B", "Q4_K_M", 2_019_393_189),
    "llama3.2:latest": Spec("llama", "3.2B", "Q4_K_M", 2_019_393_189),
    "llama3.1:8b": Spec("llama", "8.0B", "Q4_K_M", 4_920_753_328),
    "llama3.1:latest": Spec("llama", "8.0B", "Q4_K_M", 4_920_753_328),
    "qwen2.5:0.5b": Spec("qwen2", "494.03M", "Q4_K_M", 397_821_319),
    "qwen2.5:1.5b": Spec("qwen2", "1.5B", "Q4_K_M", 986_061_892),
    "qwen2.5:7b": Spec("qwen2", "7.6B", "Q4_K_M", 4_683_087_332),
    "qwen2.5:latest": Spec("qwen2", "7.6B", "Q4_K_M", 4_683_087_332),
}
_SMALL_LAYERS: Final = (
    ("application/vnd.ollama.image.template", 1_429),
    ("application/vnd.ollama.image.license", 7_711),
    ("application/vnd.ollama.image.params", 96),
)


def spec_for(canonical: str) -> Spec:
    known = _KNOWN.get(canonical.lower())
    if known is not None:
        return known
    base, _, tag = canonical.rpartition("/")[2].partition(":")
    family = re.match(r"[a-z]*", base.lower())
    params = re.search(r"(\d+(?:\.\d+)?)([bm])", tag.lower())
    if params:
        amount = float(params.group(1)) * (1e9 if params.group(2) == "b" else 1e6)
        label = params.group(1) + params.group(2).upper()
    else:
        amount, label = 7e9, "7B"
    return Spec((family.group(0) if family else "") or "llama", label, "Q4_K_M", int(amount * 0.6) + 10_000)


def valid_model_name(name: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*(:[A-Za-z0-9_][A-Za-z0-9_.\-]*)?", name.strip()))


@dataclass
class Model:
    name: str
    spec: Spec
    modified_at_ns: int
    digest: str = ""
    # runtime
    loaded: bool = False
    loading: asyncio.Task[None] | None = None
    refcount: int = 0
    keep_alive_ns: int = 0
    expires_at_ns: int = 0
    slots: tuple[int, asyncio.Semaphore] | None = None

    def __post_init__(self) -> None:
        if not self.digest:
            self.digest = hashlib.sha256(f"fake-ollama:{self.name}".encode()).hexdigest()

    def layers(self) -> list[tuple[str, int]]:
        small = sum(size for _, size in _SMALL_LAYERS)
        kinds = [("application/vnd.ollama.image.model", max(self.spec.size - small, 1)), *_SMALL_LAYERS]
        return [
            ("sha256:" + hashlib.sha256(f"fake-ollama:{self.name}:{kind}".encode()).hexdigest(), size)
            for kind, size in kinds
        ]

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.spec.family,
            "families": [self.spec.family],
            "parameter_size": self.spec.parameter_size,
            "quantization_level": self.spec.quantization,
        }
