"""``POST /api/embed``: Ollama's embeddings endpoint.

Request ``{"model", "input": str | [str], "truncate", "dimensions", "options", "keep_alive"}``; answer
``{"model", "embeddings": [[float]], "total_duration", "load_duration", "prompt_eval_count"}``. Each
vector is L2-normalised, as Ollama's are, and deterministic: a hash of (model, text), so tests can
compare. Errors as Ollama's: no model 400 ``model is required``, unknown model 404 ``model "x" not
found, try pulling it first``, an input that is neither a string nor a list of strings 400 ``invalid
input type``; an empty list answers no embeddings.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from typing import Any

from aiohttp import web

from shared.fakes.ollama.catalogue import model_not_found_error
from shared.fakes.ollama.responses import error_response, json_response
from shared.fakes.ollama.state import STATE
from shared.fakes.ollama.text import fake_token_count

__all__ = ["EMBEDDING_DIMENSIONS", "embed", "fake_embedding"]

EMBEDDING_DIMENSIONS = 64


def fake_embedding(model: str, text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The stand-in's vector for ``text``: deterministic, unit length."""
    raw: list[float] = []
    block = 0
    while len(raw) < dimensions:
        digest = hashlib.blake2b(f"{model}\x00{text}\x00{block}".encode(), digest_size=64).digest()
        raw.extend((b - 127.5) / 127.5 for b in digest)
        block += 1
    vector = raw[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


async def embed(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = time.monotonic_ns()
    try:
        body: Any = json.loads(await request.read() or b"null")
    except ValueError:
        return error_response(400, "invalid character in JSON body")
    if not isinstance(body, dict) or not body.get("model"):
        return error_response(400, "model is required")
    model = state.lookup(str(body["model"]))
    if model is None:
        return error_response(404, model_not_found_error(str(body["model"])))
    raw_input = body.get("input", [])
    inputs = [raw_input] if isinstance(raw_input, str) else raw_input
    if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
        return error_response(400, "invalid input type")
    dims = body.get("dimensions") or EMBEDDING_DIMENSIONS
    if not isinstance(dims, int) or dims < 1:
        return error_response(400, "dimensions must be a positive integer")
    vectors = [fake_embedding(model.name, text, dims) for text in inputs]
    return json_response(
        {
            "model": body["model"],
            "embeddings": vectors,
            "total_duration": time.monotonic_ns() - started,
            "load_duration": 0,
            "prompt_eval_count": sum(fake_token_count(t) for t in inputs),
        }
    )
