"""How fast each pool serves each model, learned as jobs finish: the inputs of the scale rule.

One record per pool and model (``rates/<pool>/<model>``): exponentially weighted means of the prompt
rate (prefill tokens/s), the output rate (decode tokens/s, one slot) and the output length, from the
model server's own counters in each succeeded job's result. Until a job has finished, the defaults of
:class:`~shared.boxes.scaling.WorkRates` stand in.
"""

from __future__ import annotations

from typing import Any

from shared.boxes.pools import model_key
from shared.boxes.scaling import WorkRates
from shared.controlplane import ControlPlane
from shared.models import Job

__all__ = ["KIND", "learn_rates", "rates_for"]

KIND = "rates"
WEIGHT = 0.2  # of the newest job in the running means


def _key(pool: str, model: str) -> str:
    return f"{pool}/{model_key(model)}"


def rates_for(cp: ControlPlane, pool: str, model: str) -> WorkRates:
    raw = cp.store.get_record(KIND, _key(pool, model))
    if not raw:
        return WorkRates()
    default = WorkRates()
    return WorkRates(
        prefill_tps=float(raw.get("prefill_tps") or default.prefill_tps),
        decode_tps=float(raw.get("decode_tps") or default.decode_tps),
        typical_output_tokens=float(raw.get("typical_output_tokens") or default.typical_output_tokens),
    )


def _sample(job: Job) -> dict[str, float]:
    """The rates one finished job shows (only what its result measured)."""
    result = job.result
    out: dict[str, float] = {}
    if result is None:
        return out
    if result.eval_count:
        out["typical_output_tokens"] = float(result.eval_count)
        if result.eval_duration_ns:
            out["decode_tps"] = result.eval_count / (result.eval_duration_ns / 1e9)
        elif job.started_at and job.finished_at and job.finished_at > job.started_at:
            out["decode_tps"] = result.eval_count / (job.finished_at - job.started_at)
    if result.prompt_eval_count and result.prompt_eval_duration_ns:
        out["prefill_tps"] = result.prompt_eval_count / (result.prompt_eval_duration_ns / 1e9)
    return out


def learn_rates(cp: ControlPlane, pool: str, job: Job) -> None:
    """Fold a succeeded job's measured rates into its pool and model's running means."""
    sample = _sample(job)
    if not sample:
        return

    def mutate(current: dict[str, Any] | None) -> dict[str, Any]:
        record = {k: v for k, v in (current or {}).items() if k != "id"}
        for name, value in sample.items():
            old = record.get(name)
            record[name] = value if old is None else (1 - WEIGHT) * float(old) + WEIGHT * value
        record["jobs"] = int(record.get("jobs", 0)) + 1
        return record

    cp.store.modify_record(KIND, _key(pool, job.model), mutate)
