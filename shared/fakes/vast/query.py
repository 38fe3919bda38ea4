"""Vast's query language over rows (``{"field": {"op": value}}``), ordering, and the opaque page token
of ``/api/v1/instances/``."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["matches", "page_offset", "page_token", "sort_rows"]


def _coerce(value: Any, like: Any) -> Any:
    if isinstance(like, bool):
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1", "yes")
        return bool(value)
    if isinstance(like, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    if isinstance(value, str):
        return value.replace("_", " ") if isinstance(like, str) and " " in like else value
    return value


def matches(row: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Vast's query language: ``{"field": {"op": value}}`` (a bare value means ``eq``)."""
    for name, condition in filters.items():
        if name not in row:
            continue  # unknown field: ignored
        ops = condition if isinstance(condition, Mapping) else {"eq": condition}
        if not all(_holds(row[name], op, wanted) for op, wanted in ops.items()):
            return False
    return True


def _holds(actual: Any, op: str, wanted: Any) -> bool:
    """One ``op: value`` condition on a row's value; an unknown operator holds."""
    if op in ("in", "notin"):
        items = wanted if isinstance(wanted, list) else [wanted]
        found = any(actual == _coerce(item, actual) if item is not None else actual is None for item in items)
        return found == (op == "in")
    if wanted is None:
        return (op == "eq") == (actual is None)
    target = _coerce(wanted, actual)
    if op in ("eq", "neq"):
        return bool(actual == target) == (op == "eq")
    if actual is None or not isinstance(target, int | float) or not isinstance(actual, int | float):
        return False
    compared: dict[str, bool] = {
        "gt": actual > target,
        "gte": actual >= target,
        "lt": actual < target,
        "lte": actual <= target,
    }
    return compared.get(op, True)


def sort_rows(rows: list[dict[str, Any]], order: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    for column, descending in reversed(order):
        present = [r for r in rows if r.get(column) is not None]
        missing = [r for r in rows if r.get(column) is None]
        present.sort(key=lambda r, c=column: r[c], reverse=descending)  # type: ignore[misc]
        rows = present + missing
    return rows


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        return 0
