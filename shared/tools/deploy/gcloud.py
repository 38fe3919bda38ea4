"""Running the plan with ``gcloud``, or printing it (``--dry-run``)."""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.errors import DeployError
from shared.tools.deploy.plan import Step

__all__ = ["Gcloud", "GcloudResult", "execute", "render", "run_gcloud"]


# --- running or printing it -----------------------------------------------------------------------
@dataclass(frozen=True)
class GcloudResult:
    returncode: int
    stdout: str
    stderr: str


class Gcloud(Protocol):
    def __call__(self, argv: Sequence[str], *, stdin: str | None = None) -> GcloudResult: ...


def run_gcloud(argv: Sequence[str], *, stdin: str | None = None) -> GcloudResult:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=1800)
    return GcloudResult(proc.returncode, proc.stdout, proc.stderr)


def render(steps: Sequence[Step]) -> str:
    """The dry run: every command, in order, with the condition under which each one runs."""
    lines: list[str] = []
    for step in steps:
        lines.append(f"# {step.what}")
        stdin = f"  # stdin: the value of {step.stdin}" if step.stdin else ""
        if step.describe is None:
            lines.append(shlex.join(step.create) + stdin)
            continue
        lines.append(shlex.join(step.describe) + (" >/dev/null" if step.stdin else ""))
        if step.current is not None:
            lines.append(f"#   then, {step.current_note}:")
            lines.append(shlex.join(step.create) + stdin)
        elif step.update is None:
            lines.append("#   then, if missing:")
            lines.append(shlex.join(step.create) + stdin)
        else:
            lines.append("#   then, if missing:")
            lines.append(shlex.join(step.create) + stdin)
            lines.append("#   or, if present:")
            lines.append(shlex.join(step.update) + stdin)
    return "\n".join(lines) + "\n"


def execute(
    steps: Sequence[Step], settings: dict[str, str], gcloud: Gcloud = run_gcloud, say: Callable[[str], None] = print
) -> dict[str, int]:
    """Apply the plan. Returns how many steps were created, updated, unchanged, applied."""
    counts = {"created": 0, "updated": 0, "unchanged": 0, "applied": 0}
    for step in steps:
        stdin = settings[step.stdin] if step.stdin else None
        command: tuple[str, ...] | None = step.create
        outcome = "applied"
        if step.describe is not None:
            described = gcloud(step.describe)
            if step.current is not None:
                command, outcome = (
                    (None, "unchanged")
                    if described.returncode == 0 and step.current(described.stdout)
                    else (step.create, "updated" if described.returncode == 0 else "created")
                )
            elif described.returncode == 0:
                command, outcome = (step.update, "updated") if step.update else (None, "unchanged")
            else:
                outcome = "created"
        if command is not None:
            result = gcloud(command, stdin=stdin)
            if result.returncode != 0:
                message = result.stderr.strip()
                if stdin:
                    message = message.replace(stdin, "***")
                raise DeployError(
                    f"{step.what}: {shlex.join(command[:4])} … failed ({result.returncode}): {message[-800:]}"
                )
        counts[outcome] += 1
        say(f"{outcome:>9}  {step.what}")
    return counts
