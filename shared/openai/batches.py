"""OpenAI's Batch API on gpuq jobs: ``POST /v1/batches``, ``GET /v1/batches[/{id}]``, ``POST …/cancel``.

The whole input file is validated before anything starts: each line must be ``{custom_id, method: POST,
url: <the batch's endpoint>, body}`` with a body the endpoint accepts and a model a pool serves. A bad line
is reported in the error file (its line number and what is wrong), never by failing the batch; every good
line becomes one job (max_queue_s = the completion window). Reading a batch counts its jobs; once all are
done, the output file (OpenAI's line shape, ``response.body`` the completion) and the error file are
written (ids ``file-<batch id>-output`` / ``-errors``, so two instances finishing at once write the same
files) and the batch is ``completed``, or ``cancelled`` after a cancel.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from shared.controlplane import ControlPlane
from shared.errors import Conflict, GpuqError, InvalidRequest, NotFound
from shared.jobs.intake import parse_job_create, submit_job
from shared.jobs.lifecycle import finish
from shared.models import Job
from shared.openai.answers import Kind, job_error, success_body
from shared.openai.files import FILE_KIND, file_content, get_file
from shared.openai.requests import ChatRequest, CompletionRequest, EmbeddingRequest, parse_openai
from shared.states import JobStatus

__all__ = ["BATCH_KIND", "MAX_BATCH_LINES", "batch_object", "cancel_batch", "create_batch", "get_batch", "list_batches"]

BATCH_KIND = "openai_batch"
MAX_BATCH_LINES = 5000  # the batch record maps each line to its job: well inside a 1 MiB document
WINDOW_S = 86400.0
_KINDS: dict[str, Kind] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completion",
    "/v1/embeddings": "embedding",
}
_ENDPOINTS: dict[str, type[Any]] = {
    "/v1/chat/completions": ChatRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
}


def _line_job(cp: ControlPlane, endpoint: str, line: Any, seen: set[str]) -> tuple[str, dict[str, Any]]:
    """A line's custom_id and job body; :class:`GpuqError` saying what is wrong with it otherwise."""
    if not isinstance(line, dict):
        raise InvalidRequest("the line is not a JSON object")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id or custom_id in seen:
        raise InvalidRequest("custom_id: a non-empty string, unique in the file", param="custom_id")
    if line.get("method") != "POST" or line.get("url") != endpoint:
        raise InvalidRequest(f"method and url: must be POST {endpoint}, the batch's endpoint", param="url")
    model = _ENDPOINTS[endpoint]
    parsed = parse_openai(model, line.get("body"))
    if getattr(parsed, "stream", False):
        raise InvalidRequest("body.stream: a batch line cannot stream", param="body.stream")
    body = {"model": parsed.model, "input": parsed.inputs()} if model is EmbeddingRequest else parsed.job_body()
    cp.pools.route(parsed.model)
    return custom_id, body


def _validate(
    cp: ControlPlane, endpoint: str, text: str
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    good: list[tuple[str, dict[str, Any]]] = []
    bad: list[dict[str, Any]] = []
    seen: set[str] = set()
    lines = [(n, raw) for n, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if not lines or len(lines) > MAX_BATCH_LINES:
        raise InvalidRequest(
            f"input_file_id: the file must hold 1 to {MAX_BATCH_LINES} requests", param="input_file_id"
        )
    for number, raw in lines:
        custom_id = None
        try:
            line = json.loads(raw)
            custom_id = line.get("custom_id") if isinstance(line, dict) else None
            good.append(_line_job(cp, endpoint, line, seen))
            seen.add(good[-1][0])
        except ValueError:
            bad.append({"line": number, "custom_id": None, "code": "invalid_json", "message": "the line is not JSON"})
        except GpuqError as exc:
            cid = custom_id if isinstance(custom_id, str) else None
            bad.append({"line": number, "custom_id": cid, "code": exc.code, "message": exc.message})
    return good, bad


def create_batch(cp: ControlPlane, owner: str, body: Any) -> dict[str, Any]:
    """Validate the whole input file, then one job per good line; the batch record."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    endpoint = body.get("endpoint")
    if not isinstance(endpoint, str) or endpoint not in _ENDPOINTS:
        raise InvalidRequest(f"endpoint: one of {', '.join(_ENDPOINTS)}", param="endpoint")
    if body.get("completion_window") != "24h":
        raise InvalidRequest("completion_window: only '24h'", param="completion_window")
    source = get_file(cp, owner, str(body.get("input_file_id", "")))
    if source.get("purpose") != "batch":
        raise InvalidRequest("input_file_id: the file's purpose must be 'batch'", param="input_file_id")
    good, bad = _validate(cp, str(endpoint), file_content(cp, source))
    batch_id = f"batch_{secrets.token_hex(12)}"
    now = cp.clock.now()
    jobs = {}
    for custom_id, job_body in good:
        key = f"{batch_id}:{hashlib.sha256(custom_id.encode()).hexdigest()[:32]}"
        request = parse_job_create(job_body | {"max_queue_s": WINDOW_S, "metadata": {"batch_id": batch_id}})
        job, _ = submit_job(cp, owner, request, idempotency_header=key)
        jobs[custom_id] = job.id
    record = {
        "id": batch_id,
        "owner": owner,
        "endpoint": endpoint,
        "input_file_id": source["id"],
        "status": "in_progress",
        "created_at": now,
        "in_progress_at": now,
        "jobs": jobs,
        "invalid": bad,
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else None,
    }
    cp.store.put_record(BATCH_KIND, batch_id, record)
    return record


def _owned(cp: ControlPlane, owner: str, batch_id: str) -> dict[str, Any]:
    record = cp.store.get_record(BATCH_KIND, batch_id)
    if record is None or record.get("owner") != owner:
        raise NotFound(f"no batch {batch_id!r}", code="batch_not_found", param="batch_id")
    return record


def _jobs(cp: ControlPlane, record: dict[str, Any]) -> dict[str, Job | None]:
    return {cid: cp.store.get(job_id) for cid, job_id in record["jobs"].items()}


def _result_line(cp: ControlPlane, endpoint: str, custom_id: str, job: Job) -> tuple[bool, dict[str, Any]]:
    """(succeeded, the output or error file's line) of one finished job."""
    line: dict[str, Any] = {"id": f"batch_req_{job.id}", "custom_id": custom_id, "error": None}
    if job.status is not JobStatus.SUCCEEDED:
        status, body = job_error(job)
        return False, line | {"response": {"status_code": status, "request_id": job.id, "body": body}}
    body = success_body(cp, job, _KINDS[endpoint])
    return True, line | {"response": {"status_code": 200, "request_id": job.id, "body": body}}


def _write_file(cp: ControlPlane, record: dict[str, Any], suffix: str, lines: list[dict[str, Any]]) -> str | None:
    if not lines:
        return None
    file_id = f"file-{record['id']}-{suffix}"
    text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
    cp.store.put_record(
        FILE_KIND,
        file_id,
        {
            "id": file_id,
            "owner": record["owner"],
            "filename": f"{record['id']}_{suffix}.jsonl",
            "purpose": "batch_output",
            "bytes": len(text.encode()),
            "created_at": cp.clock.now(),
            "content": text,
        },
    )
    return file_id


def _finalize(cp: ControlPlane, record: dict[str, Any], jobs: dict[str, Job | None]) -> dict[str, Any]:
    outputs: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for custom_id, job in jobs.items():
        if job is None:
            continue
        ok, line = _result_line(cp, record["endpoint"], custom_id, job)
        (outputs if ok else errors).append(line)
    for bad in record["invalid"]:
        error = {"code": bad["code"], "message": f"line {bad['line']}: {bad['message']}", "line": bad["line"]}
        errors.append(
            {"id": f"batch_req_line{bad['line']}", "custom_id": bad["custom_id"], "response": None, "error": error}
        )
    now = cp.clock.now()
    done = "cancelled" if record["status"] == "cancelling" else "completed"
    final = {
        "status": done,
        f"{done}_at": now,
        "finalizing_at": now,
        "output_file_id": _write_file(cp, record, "output", outputs),
        "error_file_id": _write_file(cp, record, "errors", errors),
    }

    def settle(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current["status"] not in ("in_progress", "cancelling"):
            return None
        return current | final

    stored, _ = cp.store.modify_record(BATCH_KIND, record["id"], settle)
    return stored or record


def _refreshed(cp: ControlPlane, record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    jobs = _jobs(cp, record)
    counts = {
        "total": len(record["jobs"]) + len(record["invalid"]),
        "completed": sum(1 for j in jobs.values() if j is not None and j.status is JobStatus.SUCCEEDED),
        "failed": len(record["invalid"])
        + sum(
            1 for j in jobs.values() if j is not None and j.status.is_terminal() and j.status is not JobStatus.SUCCEEDED
        ),
    }
    if record["status"] in ("in_progress", "cancelling") and all(
        j is None or j.status.is_terminal() for j in jobs.values()
    ):
        record = _finalize(cp, record, jobs)
    return record, counts


def batch_object(record: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    invalid = record["invalid"]
    return {
        "id": record["id"],
        "object": "batch",
        "endpoint": record["endpoint"],
        "errors": {
            "object": "list",
            "data": [{"code": b["code"], "message": b["message"], "line": b["line"], "param": None} for b in invalid],
        }
        if invalid
        else None,
        "input_file_id": record["input_file_id"],
        "completion_window": "24h",
        "status": record["status"],
        "output_file_id": record.get("output_file_id"),
        "error_file_id": record.get("error_file_id"),
        "created_at": int(record["created_at"]),
        "in_progress_at": int(record["in_progress_at"]),
        "expires_at": int(record["created_at"] + WINDOW_S),
        **{
            f"{s}_at": _int(record.get(f"{s}_at"))
            for s in ("finalizing", "completed", "failed", "expired", "cancelling", "cancelled")
        },
        "request_counts": counts,
        "metadata": record.get("metadata"),
    }


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


def get_batch(cp: ControlPlane, owner: str, batch_id: str) -> dict[str, Any]:
    record, counts = _refreshed(cp, _owned(cp, owner, batch_id))
    return batch_object(record, counts)


def list_batches(cp: ControlPlane, owner: str, *, limit: int = 20, after: str | None = None) -> dict[str, Any]:
    mine = sorted(
        (r for r in cp.store.list_records(BATCH_KIND) if r.get("owner") == owner),
        key=lambda r: (-float(r["created_at"]), r["id"]),
    )
    if after:
        ids = [r["id"] for r in mine]
        mine = mine[ids.index(after) + 1 :] if after in ids else []
    page = [batch_object(*_refreshed(cp, r)) for r in mine[: max(1, min(limit, 100))]]
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(mine) > len(page),
    }


def cancel_batch(cp: ControlPlane, owner: str, batch_id: str) -> dict[str, Any]:
    """Waiting and running jobs of the batch are cancelled; what finished stays in the output file."""
    record = _owned(cp, owner, batch_id)
    if record["status"] not in ("in_progress", "cancelling"):
        raise Conflict(f"batch {batch_id} is already {record['status']}", code="batch_finished")
    now = cp.clock.now()

    def cancelling(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current["status"] != "in_progress":
            return None
        return current | {"status": "cancelling", "cancelling_at": now}

    cp.store.modify_record(BATCH_KIND, batch_id, cancelling)
    for job_id in record["jobs"].values():
        job = cp.store.get(job_id)
        if job is not None and not job.status.is_terminal():
            finish(cp, job_id, JobStatus.CANCELLED, reason="batch_cancelled")
    return get_batch(cp, owner, batch_id)
