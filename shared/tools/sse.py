"""A small Server-Sent Events reader for the CLI, the demo and the tests (over httpx)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

__all__ = ["SseEvent", "iter_sse"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: Any
    id: str | None


def iter_sse(response: httpx.Response) -> Iterator[SseEvent]:
    event: str = "message"
    event_id: str | None = None
    data: list[str] = []
    for line in response.iter_lines():
        if not line:
            if data:
                yield SseEvent(event, json.loads("\n".join(data)), event_id)
            event, event_id, data = "message", None, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            event_id = value
