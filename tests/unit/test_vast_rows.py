"""Reading Vast's instance rows (pure, no I/O): state mapping and the agent's URL."""

from __future__ import annotations

from typing import Any

import pytest

from shared.boxes.providers.vast import agent_url_of, instance_state
from shared.models import InstanceState


@pytest.mark.parametrize(
    ("row", "state"),
    [
        (None, InstanceState.GONE),
        ({"actual_status": "running", "intended_status": "running"}, InstanceState.RUNNING),
        ({"actual_status": "running", "intended_status": "stopped"}, InstanceState.STOPPING),
        ({"actual_status": "stopped", "intended_status": "stopped"}, InstanceState.STOPPED),
        ({"actual_status": "exited", "intended_status": "stopped"}, InstanceState.STOPPED),
        ({"actual_status": None, "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "loading", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "scheduling", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "stopped", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "exited", "intended_status": "running"}, InstanceState.STARTING),
        ({"actual_status": "stopped", "intended_status": "stopped", "cur_state": "unloaded"}, InstanceState.GONE),
    ],
)
def test_vast_statuses_map_to_instance_states(row: dict[str, Any] | None, state: InstanceState) -> None:
    assert instance_state(row) is state


def test_agent_url_comes_from_public_ip_and_the_mapped_port() -> None:
    row = {"public_ipaddr": " 203.0.113.7\n", "ports": {"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41234"}]}}
    assert agent_url_of(row, 8000) == "http://203.0.113.7:41234"
    assert agent_url_of(row, 9000) is None
    assert agent_url_of({"public_ipaddr": "2001:db8::1", "ports": row["ports"]}, 8000) == "http://[2001:db8::1]:41234"
