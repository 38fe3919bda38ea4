"""The streaming ``/api/generate`` and ``/api/chat`` calls of Ollama's native API: NDJSON lines.

The connection handling is :mod:`agent.model_stream` (the hot path); this module is the body format:
one JSON object per line, ``response`` (generate) or ``message.content`` (chat) the text of each, the
line with ``"done": true`` the end with its counters, an ``{"error": ...}`` line a failure.
"""

from __future__ import annotations

import json
from typing import Any

from agent.model_stream import MAX_FRAMING_BYTES, MAX_LINE_BYTES, ModelStreams, Sink
from shared.errors import ModelServerError
from shared.models import JobResult

__all__ = ["MAX_FRAMING_BYTES", "MAX_LINE_BYTES", "NdjsonDecoder", "OllamaStreams", "Sink"]


class NdjsonDecoder:
    """Ollama's NDJSON stream of one generate (``chat=False``) or chat (``chat=True``) request."""

    __slots__ = ("_chat",)

    def __init__(self, chat: bool) -> None:
        self._chat = chat

    def pieces(self, lines: list[bytes]) -> tuple[list[str], JobResult | None]:
        texts: list[str] = []
        chat = self._chat
        for line in lines:
            if not line.strip():
                continue
            piece = json.loads(line)
            if "error" in piece:
                raise ModelServerError(str(piece["error"]))
            text = piece["message"].get("content", "") if chat else piece.get("response", "")
            if text:
                texts.append(text)
            if piece.get("done"):
                return texts, _result(piece)
        return texts, None

    def at_end(self) -> JobResult | None:
        return None  # only the final line ends an Ollama stream


def _result(piece: dict[str, Any]) -> JobResult:
    return JobResult(
        done_reason=piece.get("done_reason"),
        prompt_eval_count=piece.get("prompt_eval_count"),
        eval_count=piece.get("eval_count"),
        total_duration_ns=piece.get("total_duration"),
        load_duration_ns=piece.get("load_duration"),
        prompt_eval_duration_ns=piece.get("prompt_eval_duration"),
        eval_duration_ns=piece.get("eval_duration"),
    )


_DECODERS = (NdjsonDecoder(False), NdjsonDecoder(True))  # they keep no state: one of each serves every request


class OllamaStreams(ModelStreams):
    """Streaming calls to one Ollama server, on a pool of keep-alive connections."""

    def __init__(self, base_url: str, *, connect_timeout_s: float = 5.0) -> None:
        super().__init__(base_url, accept=b"application/x-ndjson", connect_timeout_s=connect_timeout_s)

    async def stream(self, path: str, body: dict[str, Any], sink: Sink, *, chat: bool) -> JobResult:
        """POST ``body`` to ``path``; hand each read's texts to ``sink``; return the final counters."""
        return await self.post(path, json.dumps(body).encode(), sink, _DECODERS[chat])
