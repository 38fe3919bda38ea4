"""How many boxes a pool should run for its queued work: a pure function, shared by dispatch, trigger,
the simulator and the fleet benchmark.

Work, not request count. Each job's expected seconds on one slot of a box are

    work_s = prompt_tokens / prefill_tps + output_tokens / decode_tps

with the rates measured per pool and model as jobs finish (:mod:`shared.boxes.rates`), the prompt's
tokens estimated from its length (4 characters a token), and the output tokens the job's own limit
(``num_predict`` / ``max_tokens``) or the typical count measured for the model.

A pool with ``n`` boxes up or starting, ``slots`` jobs per box, drains ``W`` seconds of work in
``W / (n * slots)``. Another box helps only if the queue is still not empty when it is ready, one cold
start ``C`` from now, so the pool wants the fewest boxes that drain the queue within one cold start::

    target = clamp(min(ceil(W / (slots * C)), ceil(jobs / slots)), 1, max_boxes)      (0 with no work)

(no more boxes than the jobs can fill: one job runs on one slot, however long it is).

A box that would only be ready after the queue is empty is therefore never started. The numbers that
decided are kept in :class:`ScaleDecision` for the event log and the job's ``status_reason``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CHARS_PER_TOKEN", "ScaleDecision", "WorkRates", "decide_target", "expected_work_s", "prompt_tokens"]

CHARS_PER_TOKEN = 4.0
"""A rough token count for a prompt before any tokenizer has seen it (English averages ~4 chars/token)."""


@dataclass(frozen=True, slots=True)
class WorkRates:
    """One pool and model's measured speed on one slot (defaults until the first job finishes)."""

    prefill_tps: float = 1000.0
    decode_tps: float = 30.0
    typical_output_tokens: float = 256.0


def _content(message: Any) -> str:
    content = message.get("content", "") if isinstance(message, Mapping) else getattr(message, "content", "")
    return str(content or "")


def prompt_tokens(prompt: str | None, messages: Iterable[Any] | None) -> float:
    """A prompt's (or chat's) token count, estimated from its length."""
    chars = len(prompt or "") + sum(len(_content(m)) for m in messages or ())
    return chars / CHARS_PER_TOKEN


def _output_limit(options: Mapping[str, Any] | None) -> float | None:
    for key in ("num_predict", "max_tokens", "max_completion_tokens"):
        value = (options or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def expected_work_s(
    rates: WorkRates,
    *,
    prompt: str | None = None,
    messages: Iterable[Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> float:
    """One job's expected seconds on one slot."""
    output = _output_limit(options) or rates.typical_output_tokens
    return prompt_tokens(prompt, messages) / rates.prefill_tps + output / rates.decode_tps


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """What the pool should run, and the numbers that decided it."""

    target: int
    active: int
    queued_work_s: float
    cold_start_s: float
    slots_per_box: int
    max_boxes: int
    drain_s: float  # on the boxes already up or starting (inf when there are none)

    @property
    def start(self) -> int:
        """How many more boxes to start now."""
        return max(0, self.target - self.active)

    def reason(self) -> str:
        if self.start == 0:
            return "enough boxes"
        if self.active == 0:
            return "work waits and no box is up"
        return (
            f"queue drains in {self.drain_s:.0f}s on {self.active} box(es), "
            f"more than one cold start ({self.cold_start_s:.0f}s)"
        )

    def numbers(self) -> dict[str, Any]:
        out = asdict(self)
        out["drain_s"] = None if math.isinf(self.drain_s) else round(self.drain_s, 3)
        out["queued_work_s"] = round(self.queued_work_s, 3)
        return out


def decide_target(
    *,
    queued_work_s: float,
    active: int,
    slots_per_box: int,
    cold_start_s: float,
    max_boxes: int,
    min_boxes: int = 0,
    jobs: int | None = None,
) -> ScaleDecision:
    """The pool's target box count for ``queued_work_s`` of waiting and running work (see the module
    docstring). With ``jobs`` (how many jobs that work is) no more boxes than they can fill are wanted:
    a job runs on one slot, however long it is."""
    slots = max(1, slots_per_box)
    cold = max(cold_start_s, 1e-3)
    if queued_work_s <= 0:
        target = min_boxes
    else:
        wanted = math.ceil(queued_work_s / (slots * cold))
        if jobs is not None:
            wanted = min(wanted, math.ceil(max(jobs, 1) / slots))
        target = min(max_boxes, max(1, min_boxes, wanted))
    drain = queued_work_s / (active * slots) if active else math.inf
    return ScaleDecision(
        target=max(target, 0),
        active=active,
        queued_work_s=queued_work_s,
        cold_start_s=cold_start_s,
        slots_per_box=slots,
        max_boxes=max_boxes,
        drain_s=drain,
    )
