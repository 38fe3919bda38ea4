"""What the GPU time cost, and who caused it.

A **session** is one run of a box: from the moment its start was requested until it stopped. All of it
is billed (``price_per_hour`` from the provider, e.g. Vast's ``dph_total``). The allocation rule gives
every billed second to a job, so the jobs' costs add up to the box's cost:

- **running**: while jobs run, each second is split equally among the jobs running then;
- **cold start** (start requested → box ready): split equally among the jobs that were waiting when it
  became ready (they caused the start). If none were, it goes to the first job of the session;
- **idle gap** between jobs (box warm, nothing running): charged to the job that ends the gap — it is
  the one the box was kept warm for;
- **idle tail** (last job done → box stopped): charged to the last job, which caused the keep-warm time.

A session that had no job at all is charged to nobody: it shows up as unallocated (a leak to look at).
Storage while stopped is not included (local and OVH boxes do not bill it; Vast's is not reported).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Session", "Span", "allocate_seconds", "session_cost_usd"]


@dataclass(frozen=True)
class Session:
    instance_id: str
    price_per_hour: float
    start_s: float
    ready_s: float | None = None
    stop_s: float | None = None  # None: still running


@dataclass(frozen=True)
class Span:
    job_id: str
    queued_s: float
    begin_s: float  # handed to the agent
    end_s: float  # finished


def session_cost_usd(session: Session, now: float) -> float:
    return max(0.0, (session.stop_s or now) - session.start_s) * session.price_per_hour / 3600.0


def allocate_seconds(session: Session, spans: list[Span], now: float) -> dict[str, float]:
    """Billed seconds of the session per job (see the module docstring). Sums to the session's length
    when it has at least one job and is closed."""
    out: dict[str, float] = defaultdict(float)
    if not spans:
        return {}
    end = session.stop_s if session.stop_s is not None else now
    spans = sorted(spans, key=lambda s: (s.begin_s, s.end_s))
    ready = session.ready_s if session.ready_s is not None else spans[0].begin_s
    ready = min(max(ready, session.start_s), end)

    # Cold start: among the jobs waiting at ready time.
    cold = ready - session.start_s
    waiting = [s for s in spans if s.queued_s <= ready] or spans[:1]
    for span in waiting:
        out[span.job_id] += cold / len(waiting)

    # From ready to end: split running time among running jobs; idle gaps go to the next job, the tail to the last.
    points = sorted({ready, end, *(min(max(t, ready), end) for s in spans for t in (s.begin_s, s.end_s))})
    last_job = max(spans, key=lambda s: s.end_s).job_id
    for lo, hi in itertools.pairwise(points):
        if hi <= lo:
            continue
        running = [s for s in spans if s.begin_s <= lo and s.end_s >= hi]
        if running:
            for span in running:
                out[span.job_id] += (hi - lo) / len(running)
            continue
        upcoming = [s for s in spans if s.begin_s >= hi]
        if upcoming:
            first = min(s.begin_s for s in upcoming)
            for span in (s for s in upcoming if s.begin_s == first):
                out[span.job_id] += (hi - lo) / sum(1 for s in upcoming if s.begin_s == first)
        else:
            out[last_job] += hi - lo
    return dict(out)
