"""One step of the plan: a resource described, then created or updated (``gcloud`` commands)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Check", "Step", "g"]

Check = Callable[[str], bool]
"""Given a describe command's stdout, True when the resource is already as wanted."""


@dataclass(frozen=True)
class Step:
    """One resource: ``describe`` it, then ``create`` when it is missing, ``update`` when present.

    ``current`` (optional) decides from the describe output that nothing needs doing. ``stdin`` names a
    secret whose value is written to the commands' standard input (never to their arguments).
    """

    what: str
    create: tuple[str, ...]
    describe: tuple[str, ...] | None = None
    update: tuple[str, ...] | None = None
    current: Check | None = field(default=None, compare=False)
    current_note: str = ""
    stdin: str | None = None


def g(*args: str) -> tuple[str, ...]:
    """A ``gcloud`` command line."""
    return ("gcloud", *args)
