"""Queue task payloads: what a job dispatch, a lease check, a callback try and an event delivery carry, typed.

One model per kind of task, tagged by ``kind``. Every producer builds its task from these models and
pushes it with :func:`push_task`, which picks the kind's queue; ``dispatch`` reads the body back with
:func:`parse_task`. The wire format is the one producers sent before these models existed (compact
JSON, keys in field order, ``try`` spelled as on the wire), so tasks already in a queue still parse.

Strict: a field of the wrong JSON type (``"seq": "3"``), a missing or unknown field, an unknown
``kind`` or a body that is not JSON makes :func:`parse_task` raise :class:`InvalidRequest` with code
``malformed_task``. Dispatch acknowledges such a task and drops it: redelivering cannot repair it,
and the queue would redeliver it forever (the emulator every 0.1 s).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.controlplane import ControlPlane
from shared.errors import InvalidRequest
from shared.observability.sinks.task import EventTask
from shared.security.headers import printable
from shared.settings import ControlPlaneSettings

__all__ = [
    "MALFORMED_TASK",
    "CallbackTask",
    "EventTask",
    "JobTask",
    "LeaseTask",
    "QueueTask",
    "parse_task",
    "push_task",
]

MALFORMED_TASK = "malformed_task"

_REASON_LIMIT = 300


class _Task(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    def payload(self) -> dict[str, Any]:
        """The JSON object pushed to the queue: field order, wire names."""
        return self.model_dump(by_alias=True)


class JobTask(_Task):
    """Dispatch one job. Current while ``seq`` equals the job's ``dispatch_seq``; a stale one drops itself."""

    kind: Literal["job"] = "job"
    job_id: str = Field(min_length=1)
    seq: int = Field(ge=0)


class LeaseTask(_Task):
    """Check the lease of one attempt of a running job."""

    kind: Literal["lease"] = "lease"
    job_id: str = Field(min_length=1)
    attempt: int = Field(ge=0)


class CallbackTask(_Task):
    """One delivery try of one callback event (``type`` is the event type, ``job.completed``…)."""

    kind: Literal["callback"] = "callback"
    job_id: str = Field(min_length=1)
    event_id: str = Field(min_length=1)
    type: str = Field(min_length=1)
    try_number: int = Field(ge=1, alias="try")

    @classmethod
    def of(cls, *, job_id: str, event_id: str, event_type: str, try_number: int = 1) -> CallbackTask:
        # Built from its wire names: ``try`` is a keyword, so it cannot be an argument of the constructor,
        # and the wire accepts no other spelling of it.
        return cls.model_validate({"job_id": job_id, "event_id": event_id, "type": event_type, "try": try_number})


# An event's delivery to a sink (shared.observability.sinks.task) rides the callback queue too.
QueueTask = Annotated[JobTask | LeaseTask | CallbackTask | EventTask, Field(discriminator="kind")]

_TASK: TypeAdapter[QueueTask] = TypeAdapter(QueueTask)


def parse_task(raw: bytes) -> QueueTask:
    """The task in a dispatch body. Raises :class:`InvalidRequest` (``malformed_task``) saying what is wrong."""
    try:
        return _TASK.validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(_reason(exc), code=MALFORMED_TASK) from None


def _reason(exc: ValidationError) -> str:
    """Where and what, without the values sent (the line is logged), bounded and printable."""
    problems = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"{where}: {error['msg']}" if where else error["msg"])
    return printable("; ".join(problems), _REASON_LIMIT)


def _queue_of(settings: ControlPlaneSettings, task: QueueTask) -> str:
    # One queue per kind of work: a slow callback receiver never delays a job's dispatch.
    if isinstance(task, JobTask):
        return settings.job_queue
    if isinstance(task, LeaseTask):
        return settings.lease_queue
    return settings.callback_queue


def push_task(cp: ControlPlane, task: QueueTask, *, delay_s: float = 0.0) -> str:
    """Queue ``task`` on its kind's queue, to be dispatched after ``delay_s``. Returns the task's name."""
    return cp.queue.push(_queue_of(cp.settings, task), task.payload(), delay_s=delay_s)
