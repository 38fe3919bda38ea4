"""The README documents every setting and shows the two commands."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from shared.settings import (
    AgentSettings,
    BlobSettings,
    ClientSettings,
    ControlPlaneSettings,
    LogSettings,
    OvhSettings,
    VastSelfStopSettings,
    VastSettings,
)

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize(
    "model",
    [
        ControlPlaneSettings,
        AgentSettings,
        ClientSettings,
        BlobSettings,
        VastSettings,
        VastSelfStopSettings,
        OvhSettings,
        LogSettings,
    ],
)
def test_every_setting_is_in_the_readme_table(model: type[BaseSettings]) -> None:
    prefix = model.model_config.get("env_prefix", "")
    names = [
        str(f.validation_alias) if isinstance(f.validation_alias, str) else f"{prefix}{name}"
        for name, f in model.model_fields.items()
    ]
    missing = [n.upper() for n in names if f"| `{n}`".upper() not in README.upper()]
    assert missing == []


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen
