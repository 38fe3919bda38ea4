"""The route table's vocabulary: a route (method, path, endpoint), and what the OpenAPI document says of
its operation. The tables themselves are :mod:`shared.jobs.routes` (the jobs API) and
:mod:`shared.jobs.routes_openai` (the OpenAI front door)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["AUTHED", "JOB_ID", "JOB_ID_REGEX", "Operation", "Param", "Reply", "Route"]

JOB_ID_REGEX = "[A-Za-z0-9_-]{1,64}"


@dataclass(frozen=True)
class Param:
    """An operation's parameter, as OpenAPI describes it."""

    name: str
    location: Literal["path", "header", "query"]
    schema: Mapping[str, Any]
    required: bool = False

    def openapi(self) -> dict[str, Any]:
        return {"name": self.name, "in": self.location, "required": self.required, "schema": dict(self.schema)}


@dataclass(frozen=True)
class Reply:
    """A documented success answer: ``schema`` names a component, or is an inline JSON Schema, or is None
    (no body)."""

    status: int
    description: str
    schema: str | Mapping[str, Any] | None = None
    media: str = "application/json"


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says of one operation. ``errors`` are statuses answered with an
    ``ErrorBody``; ``body`` names the component of a required JSON request body (or is its inline
    schema); ``secured=False`` lifts the document's default security (no API key)."""

    replies: tuple[Reply, ...]
    summary: str | None = None
    errors: tuple[int, ...] = ()
    parameters: tuple[Param, ...] = ()
    body: str | Mapping[str, Any] | None = None
    secured: bool = True


@dataclass(frozen=True)
class Route:
    """One method on one path, served by ``endpoint`` (the OpenAPI ``operationId`` when documented).

    ``doc`` is None for a route the public document leaves out: the agent-facing ones (``audience``
    ``"agent"``, served by ``functions.agent_reports``), the dashboard's (``"browser"``, served by
    ``functions.ui``) and the bare root, an alias of ``POST /v1/jobs``.
    """

    method: str
    path: str
    endpoint: str
    doc: Operation | None = None
    audience: Literal["public", "agent", "browser"] = "public"


JOB_ID = Param("job_id", "path", {"type": "string", "pattern": f"^{JOB_ID_REGEX}$"}, required=True)
AUTHED = (401, 429)  # every operation behind an API key can answer these
