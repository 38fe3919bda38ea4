"""gpuq jobs → OpenAI response objects: ``chat.completion``, ``chat.completion.chunk``,
``text_completion``, ``embedding`` lists and ``usage`` from the model server's own counters.

Ids carry the job id (``chatcmpl-<job id>``), so a response leads back to ``GET /v1/jobs/{id}``.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from shared.models import Job

__all__ = [
    "chat_chunk",
    "chat_completion",
    "completion_chunk",
    "embedding_list",
    "finish_reason",
    "text_completion",
    "usage",
]


def usage(job: Job) -> dict[str, int]:
    prompt = (job.result.prompt_eval_count if job.result else None) or 0
    completion = (job.result.eval_count if job.result else None) or 0
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def finish_reason(job: Job) -> str:
    """Ollama's ``done_reason`` (``stop`` / ``length``) is OpenAI's ``finish_reason``."""
    reason = job.result.done_reason if job.result else None
    return "length" if reason == "length" else "stop"


def _created(job: Job) -> int:
    return int(job.queued_at)


def chat_completion(job: Job, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion",
        "created": _created(job),
        "model": job.model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason(job),
            }
        ],
        "usage": usage(job),
    }


def text_completion(job: Job, text: str) -> dict[str, Any]:
    return {
        "id": f"cmpl-{job.id}",
        "object": "text_completion",
        "created": _created(job),
        "model": job.model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason(job)}],
        "usage": usage(job),
    }


def chat_chunk(
    job: Job, *, text: str | None = None, first: bool = False, finish: str | None = None, with_usage: bool = False
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``with_usage`` makes it the final usage-only chunk (no choices)."""
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{job.id}",
        "object": "chat.completion.chunk",
        "created": _created(job),
        "model": job.model,
        "system_fingerprint": None,
    }
    if with_usage:
        return chunk | {"choices": [], "usage": usage(job)}
    delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
    if text is not None:
        delta["content"] = text
    return chunk | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def completion_chunk(
    job: Job, *, text: str = "", finish: str | None = None, with_usage: bool = False
) -> dict[str, Any]:
    chunk: dict[str, Any] = {"id": f"cmpl-{job.id}", "object": "text_completion", "created": _created(job)}
    chunk["model"] = job.model
    if with_usage:
        return chunk | {"choices": [], "usage": usage(job)}
    return chunk | {"choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    """``base64``: the vector as little-endian float32, base64-encoded (what the openai SDK asks for)."""
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def embedding_list(
    model: str, vectors: list[list[float]], prompt_tokens: int, encoding: str = "float"
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encoded(v, encoding)} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
