"""The pools file: what it accepts, what it refuses (and says why), and how jobs are routed by model."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.boxes.pools import load_pools, parse_pools
from shared.errors import ValidationFailed
from shared.settings import ControlPlaneSettings, VastSettings

TWO_POOLS = """
[pools.small]
models = ["llama3.2:1b", "qwen2.5"]
max_boxes = 3
jobs_per_box = 2

[pools.big]
provider = "vast"
models = ["llama3.1:70b"]
min_boxes = 1
max_boxes = 2
[pools.big.vast]
preferred_gpus = "H100"
max_bid_per_hour = 2.5
"""


def test_a_pools_file_declares_pools_their_boxes_and_vast_choices() -> None:
    pools = parse_pools(TWO_POOLS)
    small, big = pools.pools
    assert (small.name, small.provider, small.max_boxes, small.jobs_per_box) == ("small", "local", 3, 2)
    assert small.box_ids() == ["small-1", "small-2", "small-3"]
    assert big.box_ids() == ["big-1", "big-2"] and big.min_boxes == 1
    vast = big.vast_settings(VastSettings())
    assert (vast.preferred_gpus, vast.max_bid_per_hour) == ("H100", 2.5)
    assert pools.of_box("big-2") is big and pools.of_box("nope-1") is None


def test_jobs_are_routed_by_model_with_ollamas_latest_tag() -> None:
    pools = parse_pools(TWO_POOLS)
    assert pools.route("llama3.2:1b").name == "small"
    assert pools.route("qwen2.5:latest").name == "small"  # "qwen2.5" is "qwen2.5:latest" to Ollama
    assert pools.route("LLAMA3.1:70b").name == "big"
    with pytest.raises(ValidationFailed) as refused:
        pools.route("llama3.1:8b")
    assert refused.value.code == "model_not_served"
    assert "llama3.1:70b, llama3.2:1b, qwen2.5" in refused.value.message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[pools.a]\nmodels = []\n", "models"),
        ('[pools.a]\nmodels = ["m"]\nmin_boxes = 3\nmax_boxes = 2\n', "min_boxes (3) must be <= max_boxes (2)"),
        ('[pools.a]\nmodels = ["m"]\nmax_box = 2\n', "max_box"),
        ('[pools.a]\nmodels = ["m"]\n[pools.a.vast]\napi_key = "x"\n', "VASTAI_API_KEY"),
        ('[pools.a]\nmodels = ["m"]\n[pools.a.vast]\ngpu = "x"\n', "unknown Vast setting(s) gpu"),
        ('[pools.a]\nmodels = ["m"]\nmax_boxes = 2\ninstance_ids = ["1"]\n', "more than the 1 instance_ids"),
        ('[pools.A]\nmodels = ["m"]\n', "name"),
        ("[pools]\n", "at least one"),
        ("pools = [", "not valid TOML"),
        (
            '[pools.a]\nmodels = ["m"]\ninstance_ids = ["x"]\n[pools.b]\nmodels = ["n"]\ninstance_ids = ["x"]\n',
            "box 'x'",
        ),
    ],
)
def test_a_bad_pools_file_is_refused_saying_what_and_where(text: str, says: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_pools(text, source="pools.toml")
    assert "pools.toml" in str(refused.value) and says in str(refused.value)


def test_without_a_pools_file_todays_settings_are_one_pool_of_one_box() -> None:
    settings = ControlPlaneSettings(provider="vast", instance_id="vast-7", agent_preload_models="llama3.2:1b,phi3")
    (pool,) = load_pools(settings).pools
    assert (pool.provider, pool.box_ids(), pool.models) == ("vast", ["vast-7"], ["llama3.2:1b", "phi3"])
    anything = load_pools(ControlPlaneSettings(agent_preload_models="")).pools[0]
    assert anything.serves("whatever:13b")  # no preload models: whatever the box's model server has


def test_the_file_named_by_the_setting_is_read(tmp_path: Path) -> None:
    path = tmp_path / "pools.toml"
    path.write_text(TWO_POOLS)
    assert [p.name for p in load_pools(ControlPlaneSettings(pools_file=str(path)))] == ["small", "big"]
    with pytest.raises(ValueError, match="No such file"):
        load_pools(ControlPlaneSettings(pools_file=str(tmp_path / "missing.toml")))
