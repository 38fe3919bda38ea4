"""What crosses the wire between the control plane and the agent, and callback event types.

- :class:`AgentJob` — the control plane hands one attempt of one job to an agent. It carries
  everything the agent needs (where to report, a token scoped to this job and attempt), so a box
  started long ago needs no reconfiguration.
- :class:`Report` — the agent's batched progress: output chunks, started/completed/failed.
- :class:`ReportAck` — the control plane's answer; ``cancel`` tells the agent to stop generating.
- :class:`ReportBatch` — one POST per box per interval carrying the reports of every job it runs,
  each entry authenticated by its own job token; :class:`ReportBatchAck` answers entry by entry.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.models import ChatMessage, JobError, JobResult
from shared.states import JobStatus

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "AgentJob",
    "AgentJobAccepted",
    "Report",
    "ReportAck",
    "ReportBatch",
    "ReportBatchAck",
    "ReportChunk",
    "ReportEntry",
    "ReportEntryAck",
    "callback_event_type",
]


class AgentJob(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    job_id: str
    attempt: int = Field(ge=1)
    model: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    input: list[str] | None = Field(None, description='Texts to embed: the output is {"embeddings": [[float]]}.')
    options: dict[str, Any] | None = None
    timeout_s: float
    report_url: str
    report_token: str
    reports_url: str | None = Field(
        None,
        description="The control plane's batch endpoint (POST /v1/reports): when set, the agent sends the "
        "reports of all its jobs there together instead of one POST per job to report_url.",
    )
    cold_start_s: float | None = Field(None, description="The control plane's measured cold-start estimate.")
    price_per_hour: float | None = Field(None, description="What this box costs, from the provider.")


class AgentJobAccepted(BaseModel):
    job_id: str
    attempt: int
    duplicate: bool = False


class ReportChunk(BaseModel):
    seq: int = Field(ge=0)
    text: str


class Report(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attempt: int = Field(ge=1)
    started: bool = False
    chunks: list[ReportChunk] = Field(default_factory=list, max_length=10_000)
    outcome: Literal["succeeded", "failed", "cancelled"] | None = None
    result: JobResult | None = None
    error: JobError | None = None
    status_reason: str | None = Field(
        None, max_length=120, description="What the attempt does before its output (`pulling_model 43%`)."
    )


class ReportAck(BaseModel):
    status: JobStatus
    cancel: bool = False


class ReportEntry(BaseModel):
    """One job's report inside a :class:`ReportBatch`, with the job's own per-attempt token."""

    model_config = ConfigDict(extra="forbid")

    job_id: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    token: str = Field(max_length=512)
    report: Report


class ReportBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reports: list[ReportEntry] = Field(min_length=1, max_length=1000)


class ReportEntryAck(BaseModel):
    job_id: str
    status: JobStatus | None = Field(None, description="The job's status after the report; null when refused.")
    cancel: bool = Field(False, description="Stop generating this job (cancelled, fenced, or refused).")
    error: JobError | None = Field(None, description="Why this entry was refused (bad token, unknown job).")


class ReportBatchAck(BaseModel):
    acks: list[ReportEntryAck]


TERMINAL_EVENT_TYPES = {
    JobStatus.SUCCEEDED: "job.completed",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELLED: "job.cancelled",
    JobStatus.EXPIRED: "job.expired",
}


def callback_event_type(status: JobStatus) -> str:
    return TERMINAL_EVENT_TYPES[status]
