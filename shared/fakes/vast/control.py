"""A synchronous client of the test hooks, for tests that run a fake."""

from __future__ import annotations

from typing import Any

from shared.fakes.vast.hooks import CONTROL

__all__ = ["FakeVastControl"]


class FakeVastControl:
    """Synchronous helper for the test hooks (``/__fake__/*``) of a running fake."""

    def __init__(self, url: str, api_key: str) -> None:
        import httpx

        self._http = httpx.Client(
            base_url=url.rstrip("/"), timeout=30.0, headers={"Authorization": f"Bearer {api_key}"}
        )

    def close(self) -> None:
        self._http.close()

    def calls(self) -> dict[str, int]:
        return dict(self._http.get(CONTROL + "calls").json()["calls"])

    def statuses(self) -> dict[str, dict[str, int]]:
        return dict(self._http.get(CONTROL + "calls").json()["statuses"])

    def reset_calls(self) -> None:
        self._http.delete(CONTROL + "calls").raise_for_status()

    def set(self, **fields: Any) -> dict[str, Any]:
        """Arm faults (:class:`FakeVastFaults` fields) or change delays/rate limits."""
        response = self._http.post(CONTROL + "faults", json=fields)
        response.raise_for_status()
        return dict(response.json())

    def instances(self) -> list[dict[str, Any]]:
        return list(self._http.get(CONTROL + "instances").json()["instances"])

    def instance(self, instance_id: int) -> dict[str, Any] | None:
        return next((i for i in self.instances() if i["id"] == instance_id), None)

    def destroyed(self) -> list[int]:
        return list(self._http.get(CONTROL + "instances").json()["destroyed"])

    def reset(self) -> None:
        """Destroy every instance, clear faults and counters."""
        self._http.delete(CONTROL + "instances").raise_for_status()
