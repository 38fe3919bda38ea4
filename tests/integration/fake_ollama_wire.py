"""What the tests of the Ollama stand-in share: the models and settings they run it with, the shapes they
expect of its answers, and how they read NDJSON streams and its ``/__fake__/stats``."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from shared.fakes.ollama import FakeOllamaConfig

__all__ = [
    "CHAT_FINAL_KEYS",
    "CHAT_MODEL",
    "FAST",
    "GENERATE_FINAL_KEYS",
    "METRICS",
    "MODEL",
    "ndjson",
    "no_server_errors",
    "parse_time",
    "stats",
    "stream_lines",
    "wait_until",
]

MODEL = "llama3.2:1b"
CHAT_MODEL = "qwen2.5:0.5b"
FAST = FakeOllamaConfig(token_delay_s=0.001, load_delay_s=0.02, pull_delay_s=0.01)
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
GENERATE_FINAL_KEYS = [
    "model",
    "created_at",
    "response",
    "done",
    "done_reason",
    "context",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
]
CHAT_FINAL_KEYS = [
    "model",
    "created_at",
    "message",
    "done_reason",
    "done",
    "total_duration",
    "load_duration",
    "prompt_eval_count",
    "prompt_eval_duration",
    "eval_count",
    "eval_duration",
]
METRICS = GENERATE_FINAL_KEYS[6:]


@contextlib.contextmanager
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The stand-in must never log a failure of its own (aiohttp logs handler exceptions)."""
    caplog.set_level(logging.WARNING)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("aiohttp")]
    assert not errors, [r.getMessage() for r in errors]


def parse_time(stamp: str) -> datetime:
    assert RFC3339_NANO.match(stamp), stamp
    head, _, frac = stamp[:-1].partition(".")
    return datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}+00:00")


def ndjson(lines: Iterator[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line]


def stream_lines(client: httpx.Client, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with client.stream("POST", path, json=body) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/x-ndjson"
        return ndjson(resp.iter_lines())


def stats(client: httpx.Client) -> dict[str, Any]:
    out: dict[str, Any] = client.get("/__fake__/stats").json()
    return out


def wait_until(check: Callable[[], bool], timeout: float = 3.0) -> None:
    """For server-side effects with no observable event (e.g. noticing a gone client)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
