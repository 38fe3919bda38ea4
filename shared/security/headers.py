"""What a request's headers look like to the checks, and how outside text is made safe to log."""

from __future__ import annotations

from typing import Protocol

__all__ = ["HeaderSource", "printable"]


class HeaderSource(Protocol):
    """Request headers as werkzeug, aiohttp and plain dicts all offer them (look-up by exact name)."""

    def get(self, key: str, /) -> str | None: ...


_CONTROL = dict.fromkeys([*range(0, 32), 127], "?")


def printable(text: str, limit: int = 200) -> str:
    """Text from outside made safe for a log line or a header: no control characters, bounded length."""
    return text.translate(_CONTROL)[:limit]
