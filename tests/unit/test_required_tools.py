"""A missing tool the Makefile installs skips its test outside CI and fails it under ``CI=true``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.required_tools import require_tool


def test_a_tool_that_is_there_is_returned_by_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert Path(require_tool(sys.executable, "venv")).samefile(sys.executable)
    assert require_tool("sh", "tools").endswith("/sh")


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_outside_ci_a_missing_tool_skips_naming_its_make_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str | None
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match=r"gpuq-no-such-tool is not installed: `make tools` installs it"):
        require_tool("gpuq-no-such-tool", "tools")
    with pytest.raises(pytest.skip.Exception, match="`make venv` installs it"):
        require_tool(tmp_path / "vastai" / "bin" / "vastai", "venv")


@pytest.mark.parametrize("ci", ["true", "TRUE"])
def test_under_ci_a_missing_tool_fails_naming_its_make_target(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"`make venv` installs it \(CI=true"):
        require_tool("gpuq-no-such-tool", "venv")
