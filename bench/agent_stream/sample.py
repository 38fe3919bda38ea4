"""What one (phase, concurrency, path) measured, summed over its bursts, and its row of the report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.agent_stream.constants import MODEL
from bench.ndjson_client import StreamResult
from bench.report import percentile
from shared.fakes.ollama import fake_completion_text

__all__ = ["Sample"]


@dataclass
class Sample:
    """Everything measured for one (phase, concurrency, path)."""

    ttfc_s: list[float] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    requests: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    control_plane_cpu_s: float = 0.0
    errors: int = 0
    wrong_text: int = 0
    error_examples: list[str] = field(default_factory=list)

    def add(self, results: Sequence[StreamResult], prompts: Sequence[str], tokens: int) -> None:
        for res, prompt in zip(results, prompts, strict=True):
            self.requests += 1
            if not res.ok:
                self.errors += 1
                if len(self.error_examples) < 3:
                    self.error_examples.append(res.error or f"HTTP {res.status}")
                continue
            self.tokens += res.tokens
            if res.ttfc_s is not None:
                self.ttfc_s.append(res.ttfc_s)
            self.gaps_s.extend(res.gaps_s())
            if res.text() != fake_completion_text(MODEL, prompt, tokens):
                self.wrong_text += 1

    def row(self) -> dict[str, Any]:
        ms = 1000.0
        return {
            "requests": self.requests,
            "ttfc_p50_ms": _scale(percentile(self.ttfc_s, 50), ms),
            "ttfc_p99_ms": _scale(percentile(self.ttfc_s, 99), ms),
            "gap_p50_ms": _scale(percentile(self.gaps_s, 50), ms),
            "gap_p99_ms": _scale(percentile(self.gaps_s, 99), ms),
            "gap_mean_ms": _scale(sum(self.gaps_s) / len(self.gaps_s), ms) if self.gaps_s else None,
            "chunks_per_s": self.tokens / self.wall_s if self.wall_s else None,
            "cpu_ms_per_request": self.cpu_s * ms / self.requests if self.requests else None,
            "cpu_ms_per_1k_tokens": self.cpu_s * ms * 1000 / self.tokens if self.tokens else None,
            "control_plane_cpu_ms_per_request": (
                self.control_plane_cpu_s * ms / self.requests if self.requests else None
            ),
            "tokens": self.tokens,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "errors": self.errors,
            "wrong_text": self.wrong_text,
            "error_examples": self.error_examples,
        }


def _scale(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor
