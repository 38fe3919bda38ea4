"""The streaming ``/v1/chat/completions`` and ``/v1/completions`` calls of an OpenAI-compatible server
(vLLM, llama.cpp's ``llama-server``, SGLang, TGI): Server-Sent Events.

The connection handling is :mod:`agent.model_stream` (the hot path); this module is the body format.
Each event is one ``data: <chunk JSON>`` line and a blank line; ``data: [DONE]`` ends the stream. A
chunk's text is ``choices[i].delta.content`` (chat) or ``choices[i].text`` (completions); the chunk
that ends a choice carries its ``finish_reason`` (``stop``, ``length``); asked with
``stream_options.include_usage``, the server sends one more chunk before ``[DONE]`` with empty
``choices`` and the request's ``usage`` (``prompt_tokens``, ``completion_tokens``): the job's counters
are the server's own (a server that sends none, such as llama-cpp-python's: the texts are counted, the
prompt's tokens unknown). ``[DONE]`` before any ``finish_reason`` is a generation cut short, not an end:
llama-cpp-python's server cuts a stream so when another request arrives (``--interrupt_requests``, on by
default), and the attempt fails ``model_server_busy`` (re-driven) rather than succeed with part of the
text. An error after the stream began is a ``data: {"error": {...}}`` event (vLLM's
older ``{"object": "error", "message": ...}`` too). Comment lines (``: ...``) and the ``event:``,
``id:``, ``retry:`` fields are skipped.

Per read the decoder does what the NDJSON one does: one ``json.loads`` per event and a few dict
lookups. The clock is read twice per request (first text, end), for the timings OpenAI's answers lack.
"""

from __future__ import annotations

import json
import time
from typing import Any

from shared.errors import ModelServerError
from shared.models import JobResult

__all__ = ["SseDecoder", "error_message"]


def error_message(body: Any) -> str:
    """The message of an OpenAI-shaped error, whichever of the servers' shapes it has."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("detail") or error)
        return str(error)
    return str(body)


_CUT_SHORT = (
    "the model server ended the stream before the generation finished (no finish_reason): llama-cpp-python's "
    "server does so when another request arrives, unless started with --interrupt_requests False"
)


class SseDecoder:
    """The event stream of one chat (``chat=True``) or completions request."""

    __slots__ = ("_chat", "_finish", "_first_ns", "_pieces", "_start_ns", "_usage")

    def __init__(self, chat: bool) -> None:
        self._chat = chat
        self._finish: str | None = None
        self._usage: dict[str, Any] | None = None
        self._pieces = 0  # texts seen: the token count when a server sends no usage
        self._start_ns = time.perf_counter_ns()
        self._first_ns = 0

    def pieces(self, lines: list[bytes]) -> tuple[list[str], JobResult | None]:
        texts: list[str] = []
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # the blank line ending an event, a comment, another field
            if line.rstrip().endswith(b"[DONE]"):  # no chunk's JSON ends so: it ends with "}"
                self._count(texts)
                if self._finish is None:
                    raise ModelServerError(_CUT_SHORT, code="model_server_busy")
                return texts, self.result()
            chunk = json.loads(line[5:])
            if "error" in chunk or chunk.get("object") == "error":
                raise ModelServerError(error_message(chunk))
            self._chunk(chunk, texts)
        self._count(texts)
        return texts, None

    def _chunk(self, chunk: dict[str, Any], texts: list[str]) -> None:
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") if self._chat else choice.get("text")
            if text:
                texts.append(text)
            reason = choice.get("finish_reason")
            if reason:
                self._finish = reason
        usage = chunk.get("usage")
        if usage:
            self._usage = usage

    def _count(self, texts: list[str]) -> None:
        if texts:
            if not self._first_ns:
                self._first_ns = time.perf_counter_ns()
            self._pieces += len(texts)

    def at_end(self) -> JobResult | None:
        # A server that ends the body without [DONE] has ended the stream if it said why it stopped.
        return self.result() if self._finish is not None else None

    def result(self) -> JobResult:
        """The counters: the server's usage (its token counts), the timings measured here."""
        end = time.perf_counter_ns()
        first = self._first_ns or end
        usage = self._usage or {}
        return JobResult(
            done_reason=self._finish,
            prompt_eval_count=usage.get("prompt_tokens"),
            eval_count=usage.get("completion_tokens", self._pieces),
            total_duration_ns=end - self._start_ns,
            prompt_eval_duration_ns=first - self._start_ns,
            eval_duration_ns=end - first,
        )
