"""Import code the way it will run elsewhere: only its own files and the distributions it declares.

A deployable package must not lean on this repository or on whatever else the dev venv holds. These
helpers build a site directory with symlinks to exactly the files of a set of distributions (the
declared requirements and everything they require, markers evaluated here), and import modules in a
fresh interpreter whose ``sys.path`` is the package folder, the standard library and that directory.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["import_in_sandbox", "requirement_closure", "site_with"]


def requirement_closure(requirements: list[str]) -> set[str]:
    """Canonical names of the distributions ``requirements`` pull in (as installed here)."""
    seen: set[str] = set()
    pending = [(Requirement(r), frozenset(Requirement(r).extras)) for r in requirements]
    while pending:
        requirement, extras = pending.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": e}) for e in (extras or {""})
        ):
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise AssertionError(f"{name} is required but not installed in this venv") from None
        key = f"{name}[{','.join(sorted(requirement.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (requirement.extras or {""})):
                pending.append((sub, frozenset(sub.extras)))
    return {k.split("[")[0] for k in seen}


def site_with(distributions: set[str], target: Path) -> Path:
    """A directory holding (as symlinks) every installed file of ``distributions``."""
    site = Path(sysconfig.get_paths()["purelib"])
    for name in distributions:
        for file in md.distribution(name).files or []:
            source = Path(file.locate()).resolve()
            if not source.exists() or not str(source).startswith(str(site.resolve())):
                continue  # scripts in bin/, files outside site-packages
            link = target / source.relative_to(site.resolve())
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to(source)
    return target


_PROBE = r"""
import importlib, json, sys
package, site, modules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path = [package] + [p for p in sys.path if p and "-packages" not in p] + [site]
found = {}
for module, attribute in modules:
    loaded = importlib.import_module(module)
    found[module] = {"file": loaded.__file__, "callable": callable(getattr(loaded, attribute, None))}
found["__sys_path__"] = sys.path
print(json.dumps(found))
"""


def import_in_sandbox(
    package: Path, site: Path, modules: list[tuple[str, str]], *, timeout_s: float = 60.0
) -> dict[str, dict[str, object]]:
    """Import ``modules`` (module, attribute) in ``python -S -I`` from ``package`` + stdlib + ``site``."""
    proc = subprocess.run(
        [sys.executable, "-S", "-I", "-c", _PROBE, str(package), str(site), json.dumps(modules)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=package,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, f"import failed in the sandbox:\n{proc.stderr[-3000:]}"
    found: dict[str, dict[str, object]] = json.loads(proc.stdout)
    return found
