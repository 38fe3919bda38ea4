"""A pool of two Vast boxes against the fake Vast API: a burst rents exactly two instances, each box its own
rental, and both stop once idle."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.fleet.conftest import VAST_POOLS as POOLS
from tests.fleet.conftest import StackFactory, client_for
from tests.servers import MODEL, wait_until


def test_a_burst_on_a_pool_of_two_vast_boxes_rents_two_and_stops_both(
    fleet_stack: StackFactory, tmp_path: Path
) -> None:
    from shared.tools.devstack import free_port

    pools = tmp_path / "pools.toml"
    pools.write_text(POOLS)
    stack = fleet_stack(provider="vast-fake", vast_port=free_port(), pools_file=pools, token_delay_s=0.02)
    client = client_for(stack)
    run = uuid.uuid4().hex[:8]
    jobs = [
        client.submit({"model": MODEL, "prompt": f"vast {run} {i}", "options": {"num_predict": 60}}) for i in range(6)
    ]
    done = [client.wait(j["id"], timeout_s=120) for j in jobs]
    assert [j["status"] for j in done] == ["succeeded"] * 6
    assert {j["instance_id"] for j in done} == {"vast-1", "vast-2"}
    rentals = stack.boxes()
    assert len(rentals) == 2  # one Vast instance per logical box, never a second create for one need
    wait_until(lambda: not stack.box_running(), 60, "both rented boxes to stop")

    def registry_says_stopped() -> bool:  # the registry learns it at the reaper's next pass
        return {i["id"]: i["state"] for i in client.instances()["instances"]} == {
            "vast-1": "stopped",
            "vast-2": "stopped",
        }

    wait_until(registry_says_stopped, 30, "the registry to show both boxes stopped")
    client.close()
