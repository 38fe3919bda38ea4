"""``gpuq deploy``: the dry-run's command list, idempotent execution, and gcloud's own argument parser."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest

from shared.tools.deploy import FUNCTIONS, SECRET_NAMES, Deployment, GcloudResult, execute, main, plan

ROOT = Path(__file__).resolve().parents[2]
PROJECT, REGION = "acme-gpuq", "europe-west1"
SECRETS = {  # distinctive values: none may appear in any output or file the deploy writes
    "GPUQ_API_KEYS": "alice:sk-live-Zq81xRk",
    "GPUQ_WEBHOOK_SECRET": "whsec_c2VjcmV0LXNpZ25pbmc9PQ",
    "GPUQ_AGENT_MASTER_SECRET": "agent-s3cret-Lk2",
    "GPUQ_JOB_TOKEN_SECRET": "jobtok-s3cret-Pq7",
    "GPUQ_TASK_SECRET": "task-s3cret-Wm4",
    "GPUQ_TRIGGER_TOKEN": "trig-s3cret-Yb9",
    "GPUQ_REAPER_TOKEN": "reap-s3cret-Hn3",  # not used in production (OIDC): must be neither stored nor leaked
    "VASTAI_API_KEY": "vast-key-Rt6",
}
PLAIN = {"GPUQ_PROVIDER": "vast", "GPUQ_INSTANCE_ID": "4242", "GPUQ_AGENT_PRELOAD_MODELS": "llama3.2:1b,qwen2.5:7b"}


def write_settings(path: Path, **extra: str) -> Path:
    lines = ["# deploy settings", *(f"{k}={v}" for k, v in {**SECRETS, **PLAIN, **extra}.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    settings = write_settings(tmp_path / "deploy.env")
    assert (
        main(
            [
                "--project",
                PROJECT,
                "--region",
                REGION,
                "--settings",
                str(settings),
                "--out-dir",
                str(tmp_path / "out"),
                "--dry-run",
            ]
        )
        == 0
    )
    return capsys.readouterr().out


def commands(output: str) -> list[list[str]]:
    return [
        shlex.split(line.split("  # stdin:")[0].replace(" >/dev/null", ""))
        for line in output.splitlines()
        if line.startswith("gcloud ")
    ]


def find(cmds: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in cmds if c[1 : 1 + len(prefix)] == list(prefix)]


def flag(cmd: list[str], name: str) -> str:
    values = [part.split("=", 1)[1] for part in cmd if part.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} in {cmd}"
    return values[0]


def sa(role: str) -> str:
    return f"gpuq-{role}@{PROJECT}.iam.gserviceaccount.com"


def url(function: str) -> str:
    return f"https://{REGION}-{PROJECT}.cloudfunctions.net/gpuq-{function}"


def test_the_dry_run_covers_every_resource(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = dry_run(tmp_path, capsys)
    cmds = commands(out)
    assert all(c[0] == "gcloud" for c in cmds) and len(cmds) > 80
    apis = find(cmds, "services", "enable")[0]
    for api in ("cloudfunctions", "run", "cloudbuild", "cloudtasks", "cloudscheduler", "secretmanager", "firestore"):
        assert f"{api}.googleapis.com" in apis
    assert sorted(c[4] for c in find(cmds, "iam", "service-accounts", "create")) == sorted(
        f"gpuq-{r}" for r in (*FUNCTIONS, "tasks", "scheduler")
    )
    # Firestore: the database and the indexes declared in infra/firestore.indexes.json.
    assert find(cmds, "firestore", "databases", "create")
    declared = json.loads((ROOT / "infra" / "firestore.indexes.json").read_text())
    created = {
        (flag(c, "collection-group"), tuple(p.split("=", 1)[1] for p in c if p.startswith("--field-config=")))
        for c in find(cmds, "firestore", "indexes", "composite", "create")
    }
    assert created == {
        (i["collectionGroup"], tuple(f"field-path={f['fieldPath']},order=ascending" for f in i["fields"]))
        for i in declared["indexes"]
    }
    # Secrets: created, versioned from stdin, readable only by the functions that use them.
    assert not find(cmds, "secrets", "create", "GPUQ_REAPER_TOKEN")
    for name in set(SECRETS) - {"GPUQ_REAPER_TOKEN"}:
        assert find(cmds, "secrets", "create", name)
        (add,) = find(cmds, "secrets", "versions", "add", name)
        assert "--data-file=-" in add
        readers = {flag(c, "member") for c in find(cmds, "secrets", "add-iam-policy-binding", name)}
        assert readers == {f"serviceAccount:{sa(f)}" for f, spec in FUNCTIONS.items() if name in spec.secrets}
        assert readers, f"nobody reads {name}"


def test_the_dry_run_sets_up_the_queues_and_the_functions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cmds = commands(dry_run(tmp_path, capsys))
    # Queues: created or updated with limits.
    for queue in ("gpuq-jobs", "gpuq-callbacks", "gpuq-leases"):
        for verb in ("create", "update"):
            (cmd,) = find(cmds, "tasks", "queues", verb, queue)
            for limit in (
                "max-dispatches-per-second",
                "max-concurrent-dispatches",
                "max-attempts",
                "min-backoff",
                "max-backoff",
                "max-retry-duration",
            ):
                assert flag(cmd, limit)
            assert flag(cmd, "location") == REGION
    # Functions: gen2, their entry point, their own account; public or private as designed.
    for name, spec in FUNCTIONS.items():
        (deploy,) = find(cmds, "functions", "deploy", f"gpuq-{name}")
        assert "--gen2" in deploy and "--trigger-http" in deploy and flag(deploy, "entry-point") == name
        assert flag(deploy, "service-account") == sa(name) and flag(deploy, "runtime").startswith("python3")
        assert ("--allow-unauthenticated" in deploy) is spec.public
        assert ("--no-allow-unauthenticated" in deploy) is not spec.public
        mounted = {s.split("=")[0] for s in flag(deploy, "set-secrets").split(",")}
        assert mounted == {s for s in spec.secrets if s in SECRETS} and "GPUQ_REAPER_TOKEN" not in mounted
        source = Path(flag(deploy, "source"))
        assert (source / "main.py").exists() and (source / "requirements.txt").exists()
    invokers = {(c[3], flag(c, "member")) for c in find(cmds, "functions", "add-invoker-policy-binding")}
    assert invokers == {
        ("gpuq-dispatch", f"serviceAccount:{sa('tasks')}"),
        ("gpuq-reaper", f"serviceAccount:{sa('scheduler')}"),
    }
    env = json.loads(Path(flag(find(cmds, "functions", "deploy")[0], "env-vars-file")).read_text())
    assert env["GPUQ_DISPATCH_URL"] == url("dispatch") and env["GPUQ_TASKS_SERVICE_ACCOUNT"] == sa("tasks")
    assert env["GPUQ_REAPER_URL"] == url("reaper") and env["GPUQ_SCHEDULER_SERVICE_ACCOUNT"] == sa("scheduler")
    assert env["GPUQ_AGENT_PRELOAD_MODELS"] == "llama3.2:1b,qwen2.5:7b" and env["GPUQ_STORE"] == "firestore"
    assert not set(env) & set(SECRET_NAMES)


def test_the_reaper_is_called_by_the_scheduler_with_an_oidc_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmds = commands(dry_run(tmp_path, capsys))
    for verb in ("create", "update"):
        (job,) = find(cmds, "scheduler", "jobs", verb, "http", "gpuq-reaper")
        assert flag(job, "uri") == url("reaper") and flag(job, "http-method") == "POST"
        assert flag(job, "oidc-service-account-email") == sa("scheduler")
        assert flag(job, "oidc-token-audience") == url("reaper")
        assert flag(job, "schedule") == "* * * * *"


def test_no_secret_value_is_printed_or_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = dry_run(tmp_path, capsys)
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "out").rglob("*") if p.is_file())
    for name, value in SECRETS.items():
        assert value not in out, name
        assert value not in written, name
    assert "--data-file=-" in out


def test_a_second_dry_run_prints_the_same_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = dry_run(tmp_path, capsys)
    second = dry_run(tmp_path, capsys)
    assert first == second


# --- executing the plan against a stateful stand-in for gcloud ---------------------------------------
class FakeGcloud:
    """Keeps the resources the commands create, answers describes from them, records every call."""

    def __init__(self) -> None:
        self.resources: dict[str, Any] = {}
        self.bindings: set[tuple[str, ...]] = set()
        self.calls: list[tuple[list[str], str | None]] = []

    def state(self) -> dict[str, Any]:
        return deepcopy({"resources": self.resources, "bindings": sorted(self.bindings)})

    def __call__(self, argv: Sequence[str], *, stdin: str | None = None) -> GcloudResult:
        args = list(argv)
        self.calls.append((args, stdin))
        words = [a for a in args[1:] if not a.startswith("--")]
        flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
        if "add-iam-policy-binding" in words or "add-invoker-policy-binding" in words:
            self.bindings.add((*words, flags.get("member", ""), flags.get("role", "")))
            return GcloudResult(0, "", "")
        if words[:2] == ["services", "enable"]:
            return GcloudResult(0, "", "")
        special = self._firestore(args, words, flags) or self._secrets(words, flags, stdin)
        return special or self._resource(words, flags)

    def _firestore(self, args: list[str], words: list[str], flags: dict[str, str]) -> GcloudResult | None:
        head = " ".join(words[:3])
        if head == "firestore fields ttls":
            group = flags["collection-group"]
            if words[3] == "update":
                assert "--enable-ttl" in args
                name = f"projects/p/databases/d/collectionGroups/{group}/fields/{words[4]}"
                self.resources[f"ttl/{group}/{words[4]}"] = {"name": name, "ttlConfig": {"state": "CREATING"}}
                return GcloudResult(0, "", "")
            listed = [v for k, v in self.resources.items() if k.startswith(f"ttl/{group}/")]
            return GcloudResult(0, json.dumps(listed), "")
        if head == "firestore indexes fields":
            key = f"field/{flags['collection-group']}/{words[4]}"
            if words[3] == "update":
                assert "--disable-indexes" in args
                self.resources[key] = {"indexConfig": {"usesAncestorConfig": False}}
                return GcloudResult(0, "", "")
            inherited = {"indexConfig": {"usesAncestorConfig": True, "indexes": [{"order": "ASCENDING"}]}}
            return GcloudResult(0, json.dumps(self.resources.get(key, inherited)), "")
        if words[-1] == "list" or (words[:3] == ["firestore", "indexes", "composite"] and words[3] == "list"):
            listed = [v for k, v in self.resources.items() if k.startswith("index/")]
            return GcloudResult(0, json.dumps(listed), "")
        if words[:4] == ["firestore", "indexes", "composite", "create"]:
            fields = [
                dict(p.split("=") for p in a.split("=", 1)[1].split(","))
                for a in args
                if a.startswith("--field-config=")
            ]
            key = f"index/{flags['collection-group']}/{len(self.resources)}"
            self.resources[key] = {
                "name": f"projects/p/databases/(default)/collectionGroups/"
                f"{flags['collection-group']}/indexes/{len(self.resources)}",
                "fields": [{"fieldPath": f["field-path"], "order": f["order"].upper()} for f in fields],
            }
            return GcloudResult(0, "", "")
        return None

    def _secrets(self, words: list[str], flags: dict[str, str], stdin: str | None) -> GcloudResult | None:
        if words[:3] == ["secrets", "versions", "access"]:
            versions = self.resources.get(f"secrets/{flags['secret']}", {}).get("versions", [])
            return GcloudResult(0, versions[-1], "") if versions else GcloudResult(1, "", "NOT_FOUND")
        if words[:3] == ["secrets", "versions", "add"]:
            assert stdin is not None and flags.get("data-file") == "-"
            self.resources[f"secrets/{words[3]}"]["versions"].append(stdin)
            return GcloudResult(0, "", "")
        return None

    def _resource(self, words: list[str], flags: dict[str, str]) -> GcloudResult:
        """describe / create / update / deploy of a named resource, kept in ``resources``."""
        verb_at = next(i for i, w in enumerate(words) if w in ("describe", "create", "update", "deploy"))
        kind, verb = " ".join(words[:verb_at]), words[verb_at]
        rest = [w for w in words[verb_at + 1 :] if w != "http"]
        name = rest[0] if rest else flags.get("database", "db")
        if kind == "iam service-accounts" and verb == "create":
            name = f"{name}@{PROJECT}.iam.gserviceaccount.com"
        key = f"{kind}/{name}"
        if verb == "describe":
            if key not in self.resources:
                return GcloudResult(1, "", "NOT_FOUND: no such resource")
            return GcloudResult(0, json.dumps(self.resources[key]), "")
        if verb == "create" and key in self.resources:
            return GcloudResult(1, "", "ALREADY_EXISTS")
        if verb == "update" and key not in self.resources:
            return GcloudResult(1, "", "NOT_FOUND")
        config = {k: v for k, v in flags.items() if k not in ("project", "update-labels")}
        labels = dict(p.split("=", 1) for p in flags.get("update-labels", "").split(",") if p)
        self.resources[key] = {
            **self.resources.get(key, {}),
            "config": config,
            "labels": labels,
            "versions": self.resources.get(key, {}).get("versions", []),
        }
        return GcloudResult(0, "", "")

    def mutations(self) -> list[str]:
        return [
            " ".join(a[1:5])
            for a, _ in self.calls
            if any(v in a for v in ("create", "update", "deploy", "add"))
            and "add-iam-policy-binding" not in a
            and "add-invoker-policy-binding" not in a
        ]


def deployment(tmp_path: Path, **extra: str) -> Deployment:
    from shared.tools.deploy import read_settings_file

    settings = read_settings_file(write_settings(tmp_path / "deploy.env", **extra))
    return Deployment(project=PROJECT, region=REGION, settings=settings, out_dir=tmp_path / "out")


def test_running_twice_changes_nothing_the_second_time(tmp_path: Path) -> None:
    gcloud = FakeGcloud()
    first = execute(plan(deployment(tmp_path)), deployment(tmp_path).settings, gcloud, say=lambda _: None)
    assert first["created"] > 20 and first["unchanged"] == 0
    assert sum(1 for a, _ in gcloud.calls if a[1:3] == ["functions", "deploy"]) == 4
    after_first = gcloud.state()
    gcloud.calls.clear()
    second = execute(plan(deployment(tmp_path)), deployment(tmp_path).settings, gcloud, say=lambda _: None)
    assert second["created"] == 0
    assert gcloud.state() == after_first
    changed = gcloud.mutations()
    assert not [m for m in changed if "deploy" in m or "versions add" in m or " create" in m]
    assert set(changed) == {
        "tasks queues update gpuq-jobs",
        "tasks queues update gpuq-callbacks",
        "tasks queues update gpuq-leases",
        "scheduler jobs update http",
    }  # same values again


def test_a_changed_secret_gets_one_new_version_and_stdin_carries_it(tmp_path: Path) -> None:
    gcloud = FakeGcloud()
    execute(plan(deployment(tmp_path)), deployment(tmp_path).settings, gcloud, say=lambda _: None)
    gcloud.calls.clear()
    rotated = deployment(tmp_path, GPUQ_WEBHOOK_SECRET="whsec_cm90YXRlZA")
    execute(plan(rotated), rotated.settings, gcloud, say=lambda _: None)
    adds = [(a, stdin) for a, stdin in gcloud.calls if a[1:4] == ["secrets", "versions", "add"]]
    assert adds == [(adds[0][0], "whsec_cm90YXRlZA")] and adds[0][0][4] == "GPUQ_WEBHOOK_SECRET"
    assert gcloud.resources["secrets/GPUQ_WEBHOOK_SECRET"]["versions"] == [
        SECRETS["GPUQ_WEBHOOK_SECRET"],
        "whsec_cm90YXRlZA",
    ]
    assert not any(a[1:3] == ["functions", "deploy"] for a, _ in gcloud.calls)  # secrets are read at start
    for argv, _ in gcloud.calls:
        assert not any(value in " ".join(argv) for value in [*SECRETS.values(), "whsec_cm90YXRlZA"])


def test_a_changed_setting_redeploys_the_functions(tmp_path: Path) -> None:
    gcloud = FakeGcloud()
    execute(plan(deployment(tmp_path)), deployment(tmp_path).settings, gcloud, say=lambda _: None)
    gcloud.calls.clear()
    changed = deployment(tmp_path, GPUQ_DEFAULT_TIMEOUT_S="900")
    execute(plan(changed), changed.settings, gcloud, say=lambda _: None)
    assert sorted(a[3] for a, _ in gcloud.calls if a[1:3] == ["functions", "deploy"]) == sorted(
        f"gpuq-{name}" for name in FUNCTIONS
    )


def test_a_failing_command_stops_the_deploy_with_the_reason_and_no_secret(tmp_path: Path) -> None:
    from shared.errors import DeployError

    class Refusing(FakeGcloud):
        def __call__(self, argv: Sequence[str], *, stdin: str | None = None) -> GcloudResult:
            if list(argv[1:4]) == ["secrets", "versions", "add"]:
                return GcloudResult(1, "", f"PERMISSION_DENIED: cannot store {stdin}")
            return super().__call__(argv, stdin=stdin)

    with pytest.raises(DeployError) as failed:
        execute(plan(deployment(tmp_path)), deployment(tmp_path).settings, Refusing(), say=lambda _: None)
    assert "PERMISSION_DENIED" in str(failed.value) and SECRETS["GPUQ_API_KEYS"] not in str(failed.value)


def test_an_ovh_deployment_packages_the_ovhai_cli_with_the_functions_that_drive_the_box(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = write_settings(tmp_path / "deploy.env", GPUQ_PROVIDER="ovh", OVH_TOKEN="ovh-t0ken-Qx")
    base = [
        "--project",
        PROJECT,
        "--region",
        REGION,
        "--settings",
        str(settings),
        "--out-dir",
        str(tmp_path / "out"),
        "--dry-run",
    ]
    assert main(base) == 2
    assert "--ovhai-binary" in capsys.readouterr().err
    cli = tmp_path / "ovhai"
    cli.write_bytes(b"\x7fELF fake binary")
    assert main([*base, "--ovhai-binary", str(cli)]) == 0
    out = capsys.readouterr().out
    assert "ovh-t0ken-Qx" not in out
    packaged = {p.parent.parent.name for p in (tmp_path / "out" / "functions").glob("*/bin/ovhai")}
    assert packaged == {"trigger", "dispatch", "reaper"}
    assert os.access(tmp_path / "out" / "functions" / "dispatch" / "bin" / "ovhai", os.X_OK)
    env = json.loads((tmp_path / "out" / "env.yaml").read_text())
    assert env["OVH_CLI"] == "/workspace/bin/ovhai"
    (deploy,) = find(commands(out), "functions", "deploy", "gpuq-dispatch")
    assert "OVH_TOKEN=OVH_TOKEN:latest" in flag(deploy, "set-secrets")


def test_the_pools_file_is_checked_then_packaged_with_every_function(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pools = tmp_path / "pools.toml"
    pools.write_text('[pools.gpu]\nprovider = "vast"\nmodels = ["llama3.2:1b"]\nmax_boxes = 3\n')
    settings = write_settings(tmp_path / "deploy.env", GPUQ_POOLS_FILE=str(pools))
    base = ["--project", PROJECT, "--region", REGION, "--settings", str(settings), "--out-dir", str(tmp_path / "out")]
    assert main([*base, "--dry-run"]) == 0
    capsys.readouterr()
    packaged = sorted(p.parent.name for p in (tmp_path / "out" / "functions").glob("*/pools.toml"))
    assert packaged == sorted(["enqueue", "trigger", "dispatch", "reaper"])
    assert (tmp_path / "out" / "functions" / "dispatch" / "pools.toml").read_text() == pools.read_text()
    assert json.loads((tmp_path / "out" / "env.yaml").read_text())["GPUQ_POOLS_FILE"] == "/workspace/pools.toml"
    pools.write_text('[pools.gpu]\nmodels = ["m"]\nmin_boxes = 2\nmax_boxes = 1\n')
    assert main([*base, "--dry-run"]) == 2
    assert "min_boxes (2) must be <= max_boxes (1)" in capsys.readouterr().err


# --- gcloud itself accepts every command --------------------------------------------------------
@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud is not installed: cannot check its argument parser")
def test_gcloud_parses_every_kind_of_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each distinct command (one per command path and flag set) goes through the real gcloud's parser. With a
    fresh config and no account it stops at authentication (exit 1), never at an unknown flag (exit 2)."""
    cmds = commands(dry_run(tmp_path, capsys))
    shapes: dict[tuple[str, ...], list[str]] = {}  # per command path, the variant with the most flags
    for cmd in cmds:
        path = tuple(w for w in cmd[1:6] if w.isalpha() and w not in SECRETS)
        if len(cmd) > len(shapes.get(path, ())):
            shapes[path] = cmd
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
    }

    def run(cmd: list[str]) -> tuple[list[str], int, str]:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        return cmd, proc.returncode, proc.stderr

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, shapes.values()))
    refused = [
        (" ".join(cmd[:5]), code, err.strip()[:300])
        for cmd, code, err in results
        if not (code == 1 and "active account" in err)
    ]
    assert not refused, refused
    assert len(results) >= 15
