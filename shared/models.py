"""Pydantic models: what a job is, what a client may send, what an instance is."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.states import JobStatus

__all__ = [
    "BlobRef",
    "CallbackDelivery",
    "CallbackEvent",
    "CallbackState",
    "ChatMessage",
    "Instance",
    "InstanceState",
    "Job",
    "JobCreate",
    "JobError",
    "JobResult",
    "iso",
    "new_job_id",
]

CallbackEvent = Literal["started", "output", "completed"]

MAX_METADATA_KEYS = 16
_RETRYABLE_CODES = frozenset({"model_server_unreachable", "model_server_busy"})
MetadataKey = Annotated[str, Field(min_length=1, max_length=64)]
MetadataValue = Annotated[str, Field(max_length=256)] | int | float | bool | None


def new_job_id(now: float) -> str:
    """Sortable by creation time, unguessable: ``job_`` + 12 hex of ms + 12 random hex."""
    return f"job_{int(now * 1000):012x}{secrets.token_hex(6)}"


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class BlobRef(BaseModel):
    """Where one output object is, and what it must contain. Stored on the job (small, JSON)."""

    bucket: str
    key: str
    size_bytes: int
    sha256: str


class ChatMessage(BaseModel):
    """One message of an Ollama/OpenAI chat list."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(max_length=1_000_000)
    images: list[str] | None = None


def _completed_only() -> list[CallbackEvent]:
    return ["completed"]


NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S")]
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$"
PRINTABLE = r"^[\x21-\x7e]+$"


class JobCreate(BaseModel):
    """Body of ``POST /v1/jobs``. Unknown fields are refused."""

    model_config = ConfigDict(
        extra="forbid",
        protected_namespaces=(),
        # "Exactly one of prompt, messages or input", as JSON Schema (null counts as absent), for the contract.
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["prompt"],
                    "properties": {
                        "prompt": {"type": "string"},
                        "messages": {"type": "null"},
                        "input": {"type": "null"},
                    },
                },
                {
                    "required": ["messages"],
                    "properties": {
                        "messages": {"type": "array"},
                        "prompt": {"type": "null"},
                        "input": {"type": "null"},
                    },
                },
                {
                    "required": ["input"],
                    "properties": {
                        "input": {"type": "array"},
                        "prompt": {"type": "null"},
                        "messages": {"type": "null"},
                    },
                },
            ]
        },
    )

    type: Literal["llm"] = "llm"
    model: Annotated[str, Field(min_length=1, max_length=200, pattern=MODEL_NAME)]
    prompt: NonEmpty | None = None
    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=1000)] | None = None
    input: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1, max_length=2048)] | None = Field(
        None, description="Texts to embed (an embedding job: its output is the vectors as JSON)."
    )
    options: dict[str, Any] | None = None
    callback_url: Annotated[str, Field(max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+")] | None = None
    callback_events: list[CallbackEvent] = Field(default_factory=_completed_only)
    idempotency_key: Annotated[str, Field(min_length=1, max_length=255, pattern=PRINTABLE)] | None = None
    max_queue_s: Annotated[float, Field(gt=0, le=7 * 86400)] | None = None
    timeout_s: Annotated[float, Field(gt=0, le=86400)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=MAX_METADATA_KEYS)] | None = None

    @model_validator(mode="after")
    def _one_input(self) -> JobCreate:
        if sum(x is not None for x in (self.prompt, self.messages, self.input)) != 1:
            raise ValueError("give exactly one of 'prompt', 'messages' or 'input'")
        return self

    @field_validator("callback_url", mode="before")
    @classmethod
    def _http_url(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.lower().startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http(s) URL")
        return value


class JobError(BaseModel):
    code: str
    message: str

    def is_retryable(self) -> bool:
        """The attempt failed for the box's sake, not the job's (its model server went away or was full):
        another attempt may succeed, so the control plane re-drives it while attempts remain."""
        return self.code in _RETRYABLE_CODES


class JobResult(BaseModel):
    """What the model server said when the generation ended."""

    done_reason: str | None = None
    prompt_eval_count: int | None = None
    eval_count: int | None = None
    total_duration_ns: int | None = None
    load_duration_ns: int | None = None
    prompt_eval_duration_ns: int | None = None
    eval_duration_ns: int | None = None


class CallbackDelivery(BaseModel):
    event_id: str
    type: str
    try_number: int
    at: float
    status_code: int | None = None
    error: str | None = None
    outcome: Literal["delivered", "retrying", "failed"]


class CallbackState(BaseModel):
    pending: list[str] = Field(default_factory=list)
    last_output_at: float | None = None
    deliveries: list[CallbackDelivery] = Field(default_factory=list)
    delivered: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)


class Job(BaseModel):
    """A job as the store keeps it. ``public()`` is what clients see."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    owner: str
    status: JobStatus = JobStatus.QUEUED
    status_reason: str | None = "waiting_for_dispatch"
    model: str
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    input: list[str] | None = None
    options: dict[str, Any] | None = None
    callback_url: str | None = None
    callback_events: list[CallbackEvent] = Field(default_factory=_completed_only)
    idempotency_key: str | None = None
    request_hash: str | None = None
    metadata: dict[str, Any] | None = None
    max_queue_s: float
    timeout_s: float
    max_attempts: int = 3
    attempt: int = 0
    dispatch_seq: int = 0
    next_dispatch_at: float | None = None
    lease_expires_at: float | None = None
    instance_id: str | None = None
    queued_at: float
    handed_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: JobError | None = None
    result: JobResult | None = None
    cost_usd: float | None = None
    output_ref: BlobRef | None = None  # a large finished output, moved to the bucket
    callback: CallbackState = Field(default_factory=CallbackState)
    version: int = 0

    def public(self, output: str | None = None) -> dict[str, Any]:
        """The client's view: no owner, no internal counters, timestamps as ISO 8601."""
        return {
            "id": self.id,
            "status": self.status.value,
            "status_reason": self.status_reason,
            "model": self.model,
            "output": output,
            "output_url": None,
            "output_url_expires_at": None,
            "error": self.error.model_dump() if self.error else None,
            "result": self.result.model_dump() if self.result else None,
            "attempts": self.attempt,
            "queued_at": iso(self.queued_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "instance_id": self.instance_id,
            "cost_usd": self.cost_usd,
            "idempotency_key": self.idempotency_key,
            "metadata": self.metadata,
            "callback_url": self.callback_url,
            "callback_events": self.callback_events,
            "callback": {
                "delivered": self.callback.delivered,
                "failed": self.callback.failed,
                "deliveries": [d.model_dump() | {"at": iso(d.at)} for d in self.callback.deliveries[-20:]],
            },
        }


class InstanceState(StrEnum):
    """Provider-neutral instance states."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    GONE = "gone"

    def is_up(self) -> bool:
        return self in (InstanceState.STARTING, InstanceState.RUNNING)


class Instance(BaseModel):
    """A GPU box as a provider reports it."""

    id: str
    provider: str
    state: InstanceState
    agent_url: str | None = None
    label: str | None = None
    price_per_hour: float = 0.0
    started_at: float | None = None
    stopped_at: float | None = None
    detail: str | None = None
