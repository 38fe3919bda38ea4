"""The OpenAI front door's handlers (routes in ``shared.jobs.routes_openai``): parse, submit or re-attach,
answer held or streamed (``shared.openai``). Each request occupies one of this process's threads while it
is held or streams; at most ``GPUQ_OPENAI_MAX_HELD`` at once, beyond which the 503 comes at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import flask

from functions.edge import caller, control_plane, json_response, read_body, read_json
from shared.errors import InvalidRequest, UnsupportedMediaType, ValidationFailed
from shared.models import Job
from shared.openai.answers import Answer, Kind, hold, sse, still_waiting
from shared.openai.attach import submit_or_attach
from shared.openai.batches import cancel_batch, create_batch, get_batch, list_batches
from shared.openai.files import MAX_FILE_BYTES, create_file, file_content, file_object, get_file
from shared.openai.requests import ChatRequest, CompletionRequest, EmbeddingRequest, parse_openai
from shared.security.headers import printable

__all__ = ["ENDPOINTS"]

_held_lock = threading.Lock()
_holding = 0


def _take_slot() -> bool:
    global _holding
    with _held_lock:
        if _holding >= control_plane().settings.openai_max_held:
            return False
        _holding += 1
        return True


def _give_slot() -> None:
    global _holding
    with _held_lock:
        _holding -= 1


def _answer(answer: Answer) -> flask.Response:
    return json_response(answer.body, answer.status, answer.headers)


def _released(events: Iterator[str]) -> Iterator[str]:
    try:
        yield from events
    finally:
        _give_slot()


def _job_for(request: flask.Request, model: type[Any]) -> tuple[Any, Job]:
    """The parsed request and the job answering it (new, or the one an earlier try of it started)."""
    cp = control_plane()
    owner = caller(request)
    raw = read_body(request, cp.settings.max_body_bytes)
    parsed = parse_openai(model, read_json(request, cp.settings.max_body_bytes))
    body = {"model": parsed.model, "input": parsed.inputs()} if model is EmbeddingRequest else parsed.job_body()
    job = submit_or_attach(
        cp,
        owner,
        body,
        raw,
        idempotency_key=request.headers.get("Idempotency-Key"),
        retry_count=request.headers.get("x-stainless-retry-count"),
    )
    return parsed, job


def _held(job: Job, kind: Kind, encoding: str = "float") -> flask.Response:
    """Hold the request until the job is done or the hold runs out (the 503 at once with no slot free)."""
    cp = control_plane()
    s = cp.settings
    if not _take_slot():
        return _answer(still_waiting(job, s.openai_retry_after_s, cp.clock.now()))
    try:
        held = hold(cp, job, hold_s=s.openai_hold_s, retry_after_s=s.openai_retry_after_s, kind=kind, encoding=encoding)
    finally:
        _give_slot()
    return _answer(held)


def _generate(request: flask.Request, model: type[ChatRequest] | type[CompletionRequest]) -> flask.Response:
    parsed, job = _job_for(request, model)
    chat = model is ChatRequest
    if not parsed.stream:
        return _held(job, "chat" if chat else "completion")
    cp = control_plane()
    if not _take_slot():
        return _answer(still_waiting(job, cp.settings.openai_retry_after_s, cp.clock.now()))
    events = sse(cp, job, chat=chat, include_usage=parsed.include_usage(), max_s=job.max_queue_s + job.timeout_s)
    return flask.Response(
        flask.stream_with_context(_released(events)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "x-gpuq-job-id": job.id},
    )


def _embeddings(request: flask.Request) -> flask.Response:
    parsed, job = _job_for(request, EmbeddingRequest)
    return _held(job, "embedding", parsed.encoding_format)


def _chat(request: flask.Request) -> flask.Response:
    return _generate(request, ChatRequest)


def _completion(request: flask.Request) -> flask.Response:
    return _generate(request, CompletionRequest)


ENDPOINTS: dict[str, Callable[..., flask.Response]] = {
    "openaiChat": _chat,
    "openaiCompletion": _completion,
    "openaiEmbeddings": _embeddings,
}


# --- files and batches ----------------------------------------------------------------------------
def _create_file(request: flask.Request) -> flask.Response:
    cp = control_plane()
    owner = caller(request)
    read_body(request, MAX_FILE_BYTES + 64 * 1024)  # size checked before the form is parsed
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("send the file as multipart/form-data (fields: file, purpose)")
    upload = request.files.get("file")
    if upload is None:
        raise InvalidRequest("file: required (a multipart file field)", param="file")
    record = create_file(
        cp, owner, filename=upload.filename or "", purpose=request.form.get("purpose", ""), content=upload.read()
    )
    return json_response(file_object(record))


def _get_file(request: flask.Request, file_id: str) -> flask.Response:
    return json_response(file_object(get_file(control_plane(), caller(request), file_id)))


def _file_content(request: flask.Request, file_id: str) -> flask.Response:
    cp = control_plane()
    text = file_content(cp, get_file(cp, caller(request), file_id))
    return flask.Response(text, mimetype="application/octet-stream")


def _create_batch(request: flask.Request) -> flask.Response:
    cp = control_plane()
    owner = caller(request)
    record = create_batch(cp, owner, read_json(request, cp.settings.max_body_bytes))
    return json_response(get_batch(cp, owner, record["id"]))


def _list_batches(request: flask.Request) -> flask.Response:
    owner = caller(request)
    unknown = sorted(set(request.args) - {"limit", "after"})
    if unknown:
        raise ValidationFailed(f"{', '.join(printable(u, 40) for u in unknown)}: unknown query parameter")
    limit = request.args.get("limit", "20")
    if not limit.isdigit():
        raise InvalidRequest("limit: an integer from 1 to 100", param="limit")
    return json_response(list_batches(control_plane(), owner, limit=int(limit), after=request.args.get("after")))


def _get_batch(request: flask.Request, batch_id: str) -> flask.Response:
    return json_response(get_batch(control_plane(), caller(request), batch_id))


def _cancel_batch(request: flask.Request, batch_id: str) -> flask.Response:
    return json_response(cancel_batch(control_plane(), caller(request), batch_id))


ENDPOINTS.update(
    {
        "openaiCreateFile": _create_file,
        "openaiGetFile": _get_file,
        "openaiFileContent": _file_content,
        "openaiCreateBatch": _create_batch,
        "openaiListBatches": _list_batches,
        "openaiGetBatch": _get_batch,
        "openaiCancelBatch": _cancel_batch,
    }
)
