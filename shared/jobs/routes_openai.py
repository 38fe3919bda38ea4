"""The OpenAI front door's routes (served by ``functions.openai_front``), in OpenAI's shapes and errors.

Every request is a gpuq job (``x-gpuq-job-id`` says which); ``GET /v1/models`` is the jobs API's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.jobs.routing import AUTHED, Operation, Param, Reply, Route

__all__ = ["OPENAI_ROUTES"]

_OPENAI_ERRORS = (400, 404, 409, 413, 415, 422, 503, 504, *AUTHED)
_IDEMPOTENCY = Param("Idempotency-Key", "header", {"type": "string", "pattern": r"^[\x21-\x7e]{1,255}$"})
_JOB_HEADER = "the answer's `x-gpuq-job-id` header names the job"
_CHAT = {"type": "object", "required": ["model", "messages"], "properties": {"stream": {"type": "boolean"}}}
_COMPLETION = {"type": "object", "required": ["model", "prompt"], "properties": {"stream": {"type": "boolean"}}}
_EMBEDDING = {"type": "object", "required": ["model", "input"]}
_OBJECT = {"type": "object", "required": ["id", "object"]}
_LIST = {"type": "object", "required": ["object", "data"]}
_FILE_ID = Param("file_id", "path", {"type": "string", "pattern": "^file-[A-Za-z0-9_-]{1,64}$"}, required=True)
_BATCH_ID = Param("batch_id", "path", {"type": "string", "pattern": "^batch_[A-Za-z0-9_-]{1,64}$"}, required=True)


def _generation(path: str, endpoint: str, summary: str, schema: Mapping[str, Any]) -> Route:
    return Route(
        "POST",
        path,
        endpoint,
        Operation(
            summary=f"{summary} ({_JOB_HEADER}; `stream: true` answers SSE at once, with comment lines while a "
            "box starts; otherwise held up to GPUQ_OPENAI_HOLD_S, then 503 with Retry-After: a retry re-attaches)",
            parameters=(_IDEMPOTENCY,),
            replies=(Reply(200, "The completion; with `stream: true`, SSE chunks ending `data: [DONE]`", _OBJECT),),
            errors=_OPENAI_ERRORS,
            body=schema,
        ),
    )


OPENAI_ROUTES: tuple[Route, ...] = (
    _generation("/v1/chat/completions", "openaiChat", "OpenAI chat completion", _CHAT),
    _generation("/v1/completions", "openaiCompletion", "OpenAI text completion", _COMPLETION),
    Route(
        "POST",
        "/v1/embeddings",
        "openaiEmbeddings",
        Operation(
            summary=f"OpenAI embeddings ({_JOB_HEADER})",
            parameters=(_IDEMPOTENCY,),
            replies=(Reply(200, "An embedding list", _LIST),),
            errors=_OPENAI_ERRORS,
            body=_EMBEDDING,
        ),
    ),
    Route(
        "POST",
        "/v1/files",
        "openaiCreateFile",
        Operation(
            summary="Upload a batch input file (multipart: file, purpose=batch; JSONL of custom_id, method, url, body)",
            replies=(Reply(200, "The file object", _OBJECT),),
            errors=(400, 413, 415, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/v1/files/{file_id}",
        "openaiGetFile",
        Operation(
            summary="A file object",
            parameters=(_FILE_ID,),
            replies=(Reply(200, "The file", _OBJECT),),
            errors=(404, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/v1/files/{file_id}/content",
        "openaiFileContent",
        Operation(
            summary="A file's content (a batch's output and error files are JSONL in OpenAI's line shape)",
            parameters=(_FILE_ID,),
            replies=(Reply(200, "The content", {"type": "string"}, "application/octet-stream"),),
            errors=(404, *AUTHED),
        ),
    ),
    Route(
        "POST",
        "/v1/batches",
        "openaiCreateBatch",
        Operation(
            summary="Start a batch: each line of the input file becomes a job (the file is validated first)",
            replies=(Reply(200, "The batch", _OBJECT),),
            errors=(400, 404, 413, 415, 422, *AUTHED),
            body={"type": "object", "required": ["input_file_id", "endpoint", "completion_window"]},
        ),
    ),
    Route(
        "GET",
        "/v1/batches",
        "openaiListBatches",
        Operation(
            summary="The caller's batches, newest first",
            parameters=(Param("limit", "query", {"type": "integer"}), Param("after", "query", {"type": "string"})),
            replies=(Reply(200, "Batches", _LIST),),
            errors=(400, 422, *AUTHED),
        ),
    ),
    Route(
        "GET",
        "/v1/batches/{batch_id}",
        "openaiGetBatch",
        Operation(
            summary="A batch, with its status and request_counts",
            parameters=(_BATCH_ID,),
            replies=(Reply(200, "The batch", _OBJECT),),
            errors=(404, *AUTHED),
        ),
    ),
    Route(
        "POST",
        "/v1/batches/{batch_id}/cancel",
        "openaiCancelBatch",
        Operation(
            summary="Cancel a batch: its waiting jobs are cancelled, finished ones kept",
            parameters=(_BATCH_ID,),
            replies=(Reply(200, "The batch", _OBJECT),),
            errors=(404, 409, *AUTHED),
        ),
    ),
)
