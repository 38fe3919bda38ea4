"""The docs document every setting (docs/configuration.md), and the README shows the two commands."""

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

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SETTINGS = (ROOT / "docs" / "configuration.md").read_text()


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
def test_every_setting_is_in_the_settings_table(model: type[BaseSettings]) -> None:
    prefix = model.model_config.get("env_prefix", "")
    names = [
        str(f.validation_alias) if isinstance(f.validation_alias, str) else f"{prefix}{name}"
        for name, f in model.model_fields.items()
    ]
    missing = [n.upper() for n in names if f"| `{n}`".upper() not in SETTINGS.upper()]
    assert missing == []


def test_first_screen_has_the_two_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen


def test_every_doc_the_readme_links_exists() -> None:
    import re

    linked = set(re.findall(r"\]\((docs/[^)#]+)\)", README))
    assert linked and all((ROOT / link).exists() for link in linked), linked
