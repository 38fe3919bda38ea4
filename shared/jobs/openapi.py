"""The published contracts: OpenAPI 3.1 documents for the public jobs API and for the agent's API,
generated from the pydantic models the code validates with. ``docs/openapi.json`` and
``docs/agent-openapi.json`` are these documents; a test fails when they drift from the code.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from shared.jobs.events import AgentJob, AgentJobAccepted, Report, ReportAck, ReportBatch, ReportBatchAck
from shared.models import CallbackEvent, JobCreate, JobError, JobResult
from shared.states import JobStatus

__all__ = ["agent_openapi", "dumps", "jobs_openapi"]

REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. `invalid_api_key`, `job_not_found`.")
    message: str = Field(description="What is wrong, for a person.")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer."""

    error: ErrorDetail


class DeliveryView(BaseModel):
    event_id: str
    type: str
    try_number: int
    at: str | None
    status_code: int | None
    error: str | None
    outcome: str


class CallbackView(BaseModel):
    delivered: list[str]
    failed: list[str]
    deliveries: list[DeliveryView]


class JobView(BaseModel):
    """A job as clients see it (``Job.public()``)."""

    model_config = {"protected_namespaces": ()}

    id: str
    status: JobStatus
    status_reason: str | None = Field(description="Why it waits, or what failed.")
    model: str
    output: str | None = Field(description="Output so far (partial while running).")
    output_url: str | None = Field(description="A very large finished output: where to fetch it (presigned).")
    output_url_expires_at: str | None
    error: JobError | None
    result: JobResult | None
    attempts: int
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    instance_id: str | None
    cost_usd: float | None
    idempotency_key: str | None
    metadata: dict[str, Any] | None
    callback_url: str | None
    callback_events: list[CallbackEvent]
    callback: CallbackView


class Resent(BaseModel):
    resent: list[str]


class SeedJob(BaseModel):
    """``POST /enqueue`` (the seed design's shape), with header ``x-task-type: llm``."""

    model_config = {"extra": "forbid", "protected_namespaces": ()}

    prompt: str = Field(min_length=1, pattern=r"\S")
    model: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$")
    callbackUrl: str | None = Field(None, max_length=2048, pattern=r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#]+")


class AgentHealth(BaseModel):
    status: str = Field(description="`ready`, `starting_instance`, `loading_model`, `instance_stopping`, …")
    running_jobs: int
    jobs_done: int
    idle_s: float
    instance_id: str
    error: ErrorDetail | None = None


def _components(models: list[type[BaseModel]], mode: str = "validation") -> dict[str, Any]:
    _, schema = models_json_schema([(m, mode) for m in models], ref_template=REF)  # type: ignore[misc]
    return dict(schema.get("$defs", {}))


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "Malformed body",
        401: "Missing or invalid credential",
        404: "Unknown job",
        409: "Conflict (idempotency key reused with another body, or job already finished)",
        413: "Body too large",
        415: "Not application/json",
        422: "Invalid field values",
        429: "Rate limited (see Retry-After)",
        503: "Queue unavailable: retry",
    }
    return {str(c): {"description": reasons[c], "content": _json("ErrorBody")} for c in codes}


NDJSON_DOC = "NDJSON: {response} lines, then {done, status}"
JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
}


def jobs_openapi() -> dict[str, Any]:
    schemas = _components([JobCreate, SeedJob, JobView, ErrorBody, Resent])
    job = {"description": "The job", "content": _json("JobView")}
    common = (401, 429)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpuq jobs API",
            "version": "1",
            "description": "Submit LLM jobs; they wait for a GPU box that starts on demand.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key from GPUQ_API_KEYS."}
            },
        },
        "security": [{"apiKey": []}],
        "paths": {
            "/v1/jobs": {
                "post": {
                    "operationId": "createJob",
                    "summary": "Submit a job",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"},
                        }
                    ],
                    "requestBody": {"required": True, "content": _json("JobCreate")},
                    "responses": {
                        "202": {"description": "Queued", "content": _json("JobView")},
                        "200": {
                            "description": "Same idempotency key and body: the existing job",
                            "content": _json("JobView"),
                        },
                        **_errors(400, 409, 413, 415, 422, 503, *common),
                    },
                }
            },
            "/v1/jobs/{job_id}": {
                "get": {
                    "operationId": "getJob",
                    "summary": "A job, with its output so far",
                    "parameters": [JOB_ID],
                    "responses": {"200": job, **_errors(404, *common)},
                }
            },
            "/v1/jobs/{job_id}/stream": {
                "get": {
                    "operationId": "streamJob",
                    "summary": "Server-Sent Events: status, output (id attempt-seq), done",
                    "parameters": [
                        JOB_ID,
                        {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "An event stream ending with `done`",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_errors(404, *common),
                    },
                }
            },
            "/v1/jobs/{job_id}/cancel": {
                "post": {
                    "operationId": "cancelJob",
                    "summary": "Cancel a queued or running job; partial output is kept",
                    "parameters": [JOB_ID],
                    "responses": {"200": job, **_errors(404, 409, *common)},
                }
            },
            "/v1/jobs/{job_id}/callback/resend": {
                "post": {
                    "operationId": "resendCallbacks",
                    "summary": "Deliver the job's dead-lettered callbacks again",
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": {"description": "Event ids queued again", "content": _json("Resent")},
                        **_errors(404, *common),
                    },
                }
            },
            "/enqueue": {
                "post": {
                    "operationId": "seedEnqueue",
                    "summary": "Seed-compatible submit (x-task-type: llm)",
                    "parameters": [
                        {
                            "name": "x-task-type",
                            "in": "header",
                            "required": True,
                            "schema": {"type": "string", "enum": ["llm"]},
                        }
                    ],
                    "requestBody": {"required": True, "content": _json("SeedJob")},
                    "responses": {
                        "202": {"description": "Queued", "content": _json("JobView")},
                        "200": {"description": "Existing job", "content": _json("JobView")},
                        **_errors(400, 409, 413, 415, 422, 503, *common),
                    },
                }
            },
            "/v1/cost": {
                "get": {
                    "operationId": "cost",
                    "summary": "What the boxes cost over a window, per instance and model",
                    "parameters": [
                        {
                            "name": "since",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?[smhd]$"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "Totals",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["billed_usd", "billed_gpu_hours", "cold_starts", "idle_fraction"],
                                    }
                                }
                            },
                        },
                        **_errors(422, *common),
                    },
                }
            },
            "/v1/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }


def agent_openapi() -> dict[str, Any]:
    schemas = _components(
        [AgentJob, AgentJobAccepted, AgentHealth, ErrorBody, Report, ReportAck, ReportBatch, ReportBatchAck]
    )
    signed = {
        "description": "HMAC-SHA256 over method, path, timestamp, nonce and body hash; headers "
        "X-Gpuq-Timestamp, X-Gpuq-Nonce, X-Gpuq-Signature; 5-minute window; no replay."
    }
    accepted = {"description": "Accepted", "content": _json("AgentJobAccepted")}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpuq agent API",
            "version": "1",
            "description": "Served by the agent on the GPU box; called only by the control plane. "
            + signed["description"],
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"signature": {"type": "apiKey", "in": "header", "name": "X-Gpuq-Signature", **signed}},
        },
        "security": [{"signature": []}],
        "paths": {
            "/health": {
                "get": {
                    "operationId": "health",
                    "security": [],
                    "responses": {
                        "200": {"description": "Ready", "content": _json("AgentHealth")},
                        "503": {"description": "Not ready (why in `status`)", "content": _json("AgentHealth")},
                    },
                }
            },
            "/v1/jobs": {
                "post": {
                    "operationId": "acceptJob",
                    "requestBody": {"required": True, "content": _json("AgentJob")},
                    "responses": {
                        "202": accepted,
                        "200": {**accepted, "description": "Duplicate"},
                        **_errors(401, 422),
                        "503": {"description": "Not ready, busy or stopping", "content": _json("ErrorBody")},
                    },
                }
            },
            "/v1/stream": {
                "post": {
                    "operationId": "streamJob",
                    "requestBody": {"required": True, "content": _json("AgentJob")},
                    "responses": {
                        "200": {
                            "description": NDJSON_DOC,
                            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 422),
                    },
                }
            },
            "/v1/jobs/{job_id}/cancel": {
                "post": {
                    "operationId": "cancelJob",
                    "parameters": [JOB_ID],
                    "responses": {"200": {"description": "Cancelled"}, **_errors(401, 404)},
                }
            },
        },
        "x-reports": {
            "description": "The agent POSTs one ReportBatch per interval to the job's reports_url "
            "(the control plane's POST /v1/reports), an entry per job, each with the "
            "job's report_token, and gets a ReportBatchAck (an ack per entry; 401 when "
            "no entry's token is valid). A job handed over without reports_url is "
            "reported alone: a Report to its report_url with `Authorization: Bearer "
            "<report_token>`, answered by a ReportAck."
        },
    }


def dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "openapi.json").write_text(dumps(jobs_openapi()))
    (docs / "agent-openapi.json").write_text(dumps(agent_openapi()))
    print(f"wrote {docs / 'openapi.json'} and {docs / 'agent-openapi.json'}")
