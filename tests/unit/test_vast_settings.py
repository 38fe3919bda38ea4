"""The Vast provider's settings come from Vast's own environment names and make the offer query."""

from __future__ import annotations

import pytest

from shared.boxes.providers.vast import offer_query
from shared.settings import VastSettings


def test_settings_come_from_the_documented_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "VASTAI_API_KEY": "k-env",
        "VAST_URL": "http://vast.test",
        "VASTAI_INSTANCE_ID": "C.42",
        "VASTAI_PREFERRED_GPUS": "RTX_4090, H100 SXM",
        "VASTAI_MIN_VRAM_GB": "24",
        "VASTAI_MAX_BID_PER_HOUR": "1.5",
        "VASTAI_DEFAULT_DISK_GB": "60",
        "VASTAI_DEFAULT_IMAGE": "me/agent:1",
        "VASTAI_TEMPLATE_IDS": "abc,def",
        "VASTAI_AGENT_PORT": "8001",
        "VASTAI_RESTART_DEADLINE_S": "90",
        "VASTAI_STOP_MODE": "destroy",
        "VASTAI_DESTROY_STOPPED_AFTER_S": "600",
        "VASTAI_LABEL": "gpuq-prod",
        "VASTAI_MIN_RELIABILITY": "0.9",
    }.items():
        monkeypatch.setenv(name, value)
    s = VastSettings()
    assert (s.api_key.get_secret_value(), s.url, s.instance_id) == ("k-env", "http://vast.test", "C.42")
    assert s.gpu_list() == ["RTX_4090", "H100 SXM"] and s.template_list() == ["abc", "def"]
    assert (s.min_vram_gb, s.max_bid_per_hour, s.default_disk_gb, s.default_image) == (24, 1.5, 60, "me/agent:1")
    assert (s.agent_port, s.restart_deadline_s, s.stop_mode, s.destroy_stopped_after_s) == (8001, 90, "destroy", 600)
    assert (s.label, s.min_reliability) == ("gpuq-prod", 0.9) and "k-env" not in repr(s)
    body = offer_query(s).bundles_body()
    assert body["gpu_name"] == {"in": ["RTX 4090", "H100 SXM"]} and body["gpu_ram"] == {"gte": 24000}
    assert body["dph_total"] == {"lte": 1.5} and body["reliability"] == {"gte": 0.9}
