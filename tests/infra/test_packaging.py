"""Each function's deployable folder imports on its own; the agent image holds everything the agent imports."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
from pathlib import Path

import pytest

from shared.tools.deploy import DEV_ONLY, FUNCTIONS, package_function, tree_hash
from tests.infra.sandbox import import_in_sandbox, requirement_closure, site_with

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("packages")
    return {name: package_function(name, out) for name in FUNCTIONS}


@pytest.fixture(scope="module")
def functions_site(packages: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the distributions requirements.txt declares (all four packages declare the same)."""
    requirements = {p.joinpath("requirements.txt").read_text() for p in packages.values()}
    assert len(requirements) == 1
    lines = [line for line in requirements.pop().splitlines() if line.strip()]
    return site_with(requirement_closure(lines), tmp_path_factory.mktemp("site"))


def test_a_package_holds_its_function_the_shared_core_and_nothing_else(packages: dict[str, Path]) -> None:
    enqueue = packages["enqueue"]
    top = sorted(p.name for p in enqueue.iterdir())
    assert top == ["functions", "main.py", "requirements.txt", "shared"]
    assert sorted(p.name for p in (enqueue / "functions").iterdir()) == [
        "__init__.py",
        "agent_reports.py",
        "edge.py",
        "enqueue.py",
        "openai_front.py",
        "ui.py",
    ]
    assert not list(enqueue.rglob("__pycache__")) and not list(enqueue.rglob("*.pyc"))
    assert (enqueue / "shared" / "store" / "firestore.py").exists()
    for data in ("static/dashboard.js", "static/dashboard.css", "static/policies.png", "templates/dashboard.html"):
        assert (enqueue / "shared" / "ui" / data).is_file(), data  # the dashboard's package data ships too
    for package in packages.values():
        shipped = {p.name for p in (package / "shared").iterdir()}
        assert shipped.isdisjoint(DEV_ONLY) and {"jobs", "boxes", "money", "security", "store"} <= shipped
    requirements = (enqueue / "requirements.txt").read_text().split()
    for needed in ("functions-framework", "google-cloud-tasks", "google-cloud-firestore", "boto3", "pydantic"):
        assert any(r.startswith(needed) for r in requirements), needed
    assert not any(r.startswith(("pytest", "moto", "hypothesis", "ruff")) for r in requirements)


def test_packaging_again_gives_the_same_bytes(packages: dict[str, Path], tmp_path: Path) -> None:
    again = package_function("dispatch", tmp_path)
    assert tree_hash(again) == tree_hash(packages["dispatch"])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_each_entry_point_imports_from_its_package_alone(
    name: str, packages: dict[str, Path], functions_site: Path
) -> None:
    found = import_in_sandbox(packages[name], functions_site, [("main", name), ("functions_framework", "http")])
    main = found["main"]
    assert main["callable"] is True
    assert str(main["file"]).startswith(str(packages[name]))
    assert str(ROOT) not in json.dumps(found["__sys_path__"])


def docker_context_exclusions() -> list[str]:
    """The patterns of the agent image's build context ignore file, which BuildKit applies to its COPY lines."""
    ignore = (ROOT / "infra" / "agent" / "Dockerfile.dockerignore").read_text().splitlines()
    return [line.strip() for line in ignore if line.strip() and not line.startswith("#")]


def _excluded(patterns: list[str], folder: str, names: list[str]) -> set[str]:
    relative = Path(folder).relative_to(ROOT)
    return {
        n
        for n in names
        if any(
            fnmatch.fnmatch(str(relative / n), p.removeprefix("**/")) or fnmatch.fnmatch(n, p.removeprefix("**/"))
            for p in patterns
        )
    }


def test_the_build_context_leaves_out_what_the_function_packages_leave_out() -> None:
    assert {f"shared/{name}" for name in DEV_ONLY} <= set(docker_context_exclusions())


def test_the_agent_image_installs_everything_the_agent_imports(tmp_path: Path) -> None:
    dockerfile = (ROOT / "infra" / "agent" / "Dockerfile").read_text()
    declared = re.search(r'^ARG AGENT_REQUIREMENTS="(?P<reqs>[^"]+)"$', dockerfile, re.MULTILINE)
    assert declared is not None, "the Dockerfile no longer declares AGENT_REQUIREMENTS"
    requirements = declared["reqs"].split()
    assert "${AGENT_REQUIREMENTS}" in dockerfile and len(requirements) >= 4
    site = site_with(requirement_closure(requirements), tmp_path / "site")
    image = tmp_path / "opt-gpuq"  # what the image copies: shared/ and agent/ less the build context's exclusions
    excluded = docker_context_exclusions()
    for folder in ("shared", "agent"):
        shutil.copytree(ROOT / folder, image / folder, ignore=lambda d, names: _excluded(excluded, d, names))
    assert "COPY shared/ /opt/gpuq/shared/" in dockerfile and "COPY agent/ /opt/gpuq/agent/" in dockerfile
    assert not any((image / "shared" / dev_only).exists() for dev_only in DEV_ONLY)
    found = import_in_sandbox(image, site, [("agent.app", "build_app"), ("agent.__main__", "main")])
    assert found["agent.app"]["callable"] is True


def test_the_clients_imported_lazily_in_production_are_in_the_package_too(
    packages: dict[str, Path], functions_site: Path
) -> None:
    """Firestore, the bucket and Cloud Tasks are imported on first use only: check them explicitly."""
    found = import_in_sandbox(
        packages["dispatch"],
        functions_site,
        [
            ("shared.store.firestore", "FirestoreJobStore"),
            ("google.cloud.firestore", "Client"),
            ("shared.store.blobs", "BlobStore"),
            ("boto3", "client"),
            ("google.cloud.tasks_v2", "CloudTasksClient"),
            ("shared.security.oidc", "verify_oidc"),
            ("google.oauth2.id_token", "verify_oauth2_token"),
            ("google.auth.transport.requests", "Request"),
        ],
    )
    assert all(entry["callable"] for name, entry in found.items() if name != "__sys_path__")
