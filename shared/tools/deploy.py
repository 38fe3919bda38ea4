"""``gpuq deploy``: create or update everything gpuq needs in a Google Cloud project, with ``gcloud``.

Given a project, a region and a settings file (``KEY=VALUE`` lines: the ``GPUQ_*`` settings of the
functions, their secrets, and the provider's keys), it makes sure these exist and match, in order:

1. the APIs; a service account per role (one per function, one whose OIDC token Cloud Tasks sends to
   dispatch, one whose OIDC token Cloud Scheduler sends to the reaper);
2. the Firestore database and the indexes of ``infra/firestore.indexes.json``;
3. one Secret Manager secret per secret setting, a new version only when the value changed, and each
   function's runtime account allowed to read exactly the secrets it uses;
4. the Cloud Tasks queues (jobs, callbacks, leases) with their retry, rate and concurrency limits, and who
   may add tasks to them;
5. the four functions (gen2, HTTP), each packaged alone: ``main.py`` exporting its entry point, the
   ``functions`` modules it needs, ``shared/`` without its dev-only folders (``DEV_ONLY``),
   ``requirements.txt``; dispatch and the reaper are private (only the tasks / scheduler accounts may
   invoke them), enqueue and trigger are public (API keys, signatures);
6. the Cloud Scheduler job that calls the reaper with an OIDC token.

Idempotent: every resource is described first, then created if missing or updated if present; a function
whose packaged source and configuration are unchanged (its ``gpuq-deploy`` label holds their hash) is not
redeployed, and a secret whose latest version already holds the value gets no new version. Running it
twice changes nothing the second time. ``--dry-run`` prints every ``gcloud`` command it would run — the
describe, and both branches of each decision — and runs none; it still packages the functions (local
files only). Secret values never appear in a command line or in the output: they go on ``gcloud``'s
standard input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from shared.errors import DeployError

__all__ = [
    "DEV_ONLY",
    "FUNCTIONS",
    "QUEUES",
    "SECRET_NAMES",
    "Deployment",
    "FunctionSpec",
    "GcloudResult",
    "QueueSpec",
    "Step",
    "main",
    "package_function",
    "plan",
    "read_settings_file",
    "render",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION_ROOT = "/workspace"  # where Cloud Functions (gen2) puts the deployed source
INDEXES_FILE = REPO_ROOT / "infra" / "firestore.indexes.json"

SECRET_NAMES = (
    "GPUQ_API_KEYS",
    "GPUQ_WEBHOOK_SECRET",
    "GPUQ_AGENT_MASTER_SECRET",
    "GPUQ_JOB_TOKEN_SECRET",
    "GPUQ_TASK_SECRET",
    "GPUQ_TRIGGER_TOKEN",
    "GPUQ_REAPER_TOKEN",
    "GPUQ_AGENT_SECRET",
    "VASTAI_API_KEY",
    "OVH_TOKEN",
    "OVH_APP_TOKEN",
    "OVH_APP_BASIC_AUTH",
    "GPUQ_BLOB_ACCESS_KEY_ID",
    "GPUQ_BLOB_SECRET_ACCESS_KEY",
)
"""Settings that are secrets: kept in Secret Manager (secret id = the variable's name), never in env files.
One that no function uses (the reaper token once OIDC guards the reaper; a box's own agent secret) is left
out of both."""

_PROVIDER_SECRETS = ("VASTAI_API_KEY", "OVH_TOKEN", "OVH_APP_TOKEN", "OVH_APP_BASIC_AUTH")
_BLOB_SECRETS = ("GPUQ_BLOB_ACCESS_KEY_ID", "GPUQ_BLOB_SECRET_ACCESS_KEY")


@dataclass(frozen=True)
class FunctionSpec:
    """One Cloud Function: who may call it, what it may read, how it scales."""

    public: bool
    secrets: tuple[str, ...]
    queue_roles: tuple[tuple[str, str], ...]  # (queue setting, role) on our queues
    timeout_s: int = 60
    max_instances: int = 20
    concurrency: int = 20
    memory: str = "512Mi"
    modules: tuple[str, ...] = ()  # ``functions/`` modules it imports besides ``edge.py`` and its own


_PUSH = tuple((q, "roles/cloudtasks.enqueuer") for q in ("jobs", "callbacks", "leases"))

FUNCTIONS: dict[str, FunctionSpec] = {
    # The jobs API: creates jobs (pushes dispatch tasks), takes agent reports (job tokens), cancels on the
    # agent (agent secret), serves SSE streams (long requests: a 60-minute limit).
    "enqueue": FunctionSpec(
        public=True,
        timeout_s=3600,
        concurrency=40,
        modules=("agent_reports.py",),  # the agent-facing report endpoints, served at the same URLs
        queue_roles=_PUSH,
        secrets=(
            "GPUQ_API_KEYS",
            "GPUQ_TASK_SECRET",
            "GPUQ_JOB_TOKEN_SECRET",
            "GPUQ_AGENT_MASTER_SECRET",
            *_BLOB_SECRETS,
        ),
    ),
    # External pings (trigger token) and the agent's signed "ready"; starts the box, re-issues tasks.
    "trigger": FunctionSpec(
        public=True,
        max_instances=5,
        queue_roles=_PUSH,
        secrets=("GPUQ_TRIGGER_TOKEN", "GPUQ_AGENT_MASTER_SECRET", "GPUQ_TASK_SECRET", *_PROVIDER_SECRETS),
    ),
    # Cloud Tasks' target: job hand-over (agent secret, job tokens), lease checks, callback delivery.
    "dispatch": FunctionSpec(
        public=False,
        queue_roles=_PUSH,
        secrets=(
            "GPUQ_TASK_SECRET",
            "GPUQ_AGENT_MASTER_SECRET",
            "GPUQ_JOB_TOKEN_SECRET",
            "GPUQ_WEBHOOK_SECRET",
            *_PROVIDER_SECRETS,
            *_BLOB_SECRETS,
        ),
    ),
    # Cloud Scheduler's target (its OIDC token, not GPUQ_REAPER_TOKEN): one at a time; pauses/resumes the job
    # queue for the budget.
    "reaper": FunctionSpec(
        public=False,
        timeout_s=300,
        max_instances=1,
        concurrency=1,
        queue_roles=(*_PUSH, ("jobs", "roles/cloudtasks.queueAdmin")),
        secrets=("GPUQ_TASK_SECRET", "GPUQ_AGENT_MASTER_SECRET", *_PROVIDER_SECRETS, *_BLOB_SECRETS),
    ),
}


@dataclass(frozen=True)
class QueueSpec:
    """Rate, concurrency and the queue's own retries (dispatch snoozes by new tasks; these are backstops)."""

    max_dispatches_per_second: float
    max_concurrent_dispatches: int
    max_attempts: int
    min_backoff: str
    max_backoff: str
    max_doublings: int
    max_retry_duration: str


QUEUES: dict[str, QueueSpec] = {
    # Job dispatch: a 5xx only when a snooze could not even be scheduled; the reaper re-drives lost ones.
    "jobs": QueueSpec(100, 100, 100, "1s", "60s", 6, "86400s"),
    # Callback tries: gpuq schedules each retry itself (doubling to 1 h, GPUQ_CALLBACK_MAX_TRIES).
    "callbacks": QueueSpec(50, 50, 5, "5s", "300s", 4, "3600s"),
    # Lease checks of running jobs.
    "leases": QueueSpec(50, 20, 20, "1s", "60s", 4, "3600s"),
}


def read_settings_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` prefix, ``#`` comments and surrounding quotes allowed)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise ValueError(f"{path}:{number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


# --- packaging ------------------------------------------------------------------------------------
def _requirements(root: Path) -> list[str]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project.get("optional-dependencies", {}).get("gcp", [])]
    return sorted(set(wanted), key=str.lower)


DEV_ONLY = ("tools", "sim", "fakes")
"""Subpackages of ``shared`` that no function or agent imports (import-linter checks it): never shipped.
The agent image leaves out the same folders (``infra/agent/Dockerfile.dockerignore``)."""


def _ignore(folder: str, names: list[str]) -> set[str]:
    dev_only = set(DEV_ONLY) if Path(folder).name == "shared" else set()
    return {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo")) or n in dev_only}


def package_function(name: str, out_dir: Path, *, root: Path = REPO_ROOT) -> Path:
    """Build ``out_dir/<name>/``: the deployable source of one function, and nothing else. Rebuilt from
    scratch each time, so the same tree gives the same bytes (and the same hash)."""
    if name not in FUNCTIONS:
        raise ValueError(f"unknown function {name!r}")
    target = out_dir / name
    if target.exists():
        shutil.rmtree(target)
    (target / "functions").mkdir(parents=True)
    for module in ("__init__.py", "edge.py", f"{name}.py", *FUNCTIONS[name].modules):
        shutil.copy2(root / "functions" / module, target / "functions" / module)
    shutil.copytree(root / "shared", target / "shared", ignore=_ignore)
    (target / "main.py").write_text(
        f'"""Entry module of the gpuq {name} function (generated by shared.tools.deploy; entry point: {name})."""\n\n'
        f'from functions.{name} import {name}\n\n__all__ = ["{name}"]\n'
    )
    (target / "requirements.txt").write_text("\n".join(_requirements(root)) + "\n")
    return target


def tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


# --- the plan -------------------------------------------------------------------------------------
Check = Callable[[str], bool]
"""Given a describe command's stdout, True when the resource is already as wanted."""


@dataclass(frozen=True)
class Step:
    """One resource: ``describe`` it, then ``create`` when it is missing, ``update`` when present.

    ``current`` (optional) decides from the describe output that nothing needs doing. ``stdin`` names a
    secret whose value is written to the commands' standard input (never to their arguments).
    """

    what: str
    create: tuple[str, ...]
    describe: tuple[str, ...] | None = None
    update: tuple[str, ...] | None = None
    current: Check | None = field(default=None, compare=False)
    current_note: str = ""
    stdin: str | None = None


@dataclass
class Deployment:
    project: str
    region: str
    settings: dict[str, str]
    out_dir: Path
    firestore_location: str = ""
    database: str = "(default)"
    schedule: str = "* * * * *"
    runtime: str = "python311"
    ovhai_binary: Path | None = None

    def sa(self, role: str) -> str:
        return f"gpuq-{role}@{self.project}.iam.gserviceaccount.com"

    def function_name(self, name: str) -> str:
        return f"gpuq-{name}"

    def function_url(self, name: str) -> str:
        return f"https://{self.region}-{self.project}.cloudfunctions.net/{self.function_name(name)}"

    def queue_name(self, kind: str) -> str:
        key = {"jobs": "GPUQ_JOB_QUEUE", "callbacks": "GPUQ_CALLBACK_QUEUE", "leases": "GPUQ_LEASE_QUEUE"}[kind]
        return self.settings.get(key) or f"gpuq-{kind}"

    def secrets(self) -> list[str]:
        """The secrets to store: given in the settings file and read by at least one function."""
        used = {s for spec in FUNCTIONS.values() for s in spec.secrets}
        return [name for name in SECRET_NAMES if self.settings.get(name) and name in used]

    def unused_secrets(self) -> list[str]:
        return [name for name in SECRET_NAMES if self.settings.get(name) and name not in self.secrets()]

    def env(self) -> dict[str, str]:
        """The functions' plain settings: the file's non-secret values plus what the deployment decides."""
        plain = {k: v for k, v in self.settings.items() if k not in SECRET_NAMES}
        plain.update(
            {
                "GPUQ_TASKS_PROJECT": self.project,
                "GPUQ_TASKS_LOCATION": self.region,
                "GPUQ_TASKS_SERVICE_ACCOUNT": self.sa("tasks"),  # dispatch checks the tasks' OIDC token
                "GPUQ_SCHEDULER_SERVICE_ACCOUNT": self.sa("scheduler"),  # the reaper checks the scheduler's
                "GPUQ_REAPER_URL": self.function_url("reaper"),  # … and its audience
                "GPUQ_PUBLIC_URL": self.function_url("enqueue"),
                "GPUQ_DISPATCH_URL": self.function_url("dispatch"),
                "GPUQ_STORE": "firestore",
                "GPUQ_FIRESTORE_PROJECT": self.project,
                "GPUQ_FIRESTORE_DATABASE": self.database,
                "GPUQ_DATA_DIR": "/tmp/gpuq",
            }
        )
        if self.settings.get("GPUQ_PROVIDER") == "ovh":
            plain["OVH_CLI"] = f"{FUNCTION_ROOT}/bin/ovhai"  # packaged beside the code: the runtime has none
        return dict(sorted(plain.items()))


def _g(*args: str) -> tuple[str, ...]:
    return ("gcloud", *args)


def _labels_match(label: str, value: str) -> Check:
    def check(out: str) -> bool:
        try:
            labels = json.loads(out).get("labels") or {}
        except (ValueError, AttributeError):
            return False
        return bool(labels.get(label) == value)

    return check


def _index_present(collection: str, fields: list[tuple[str, str]]) -> Check:
    def check(out: str) -> bool:
        try:
            listed = json.loads(out) or []
        except ValueError:
            return False
        for index in listed:
            if not str(index.get("name", "")).split("/collectionGroups/")[-1].startswith(collection + "/"):
                continue
            have = [
                (f.get("fieldPath"), str(f.get("order", "")).lower())
                for f in index.get("fields", [])
                if f.get("fieldPath") != "__name__"
            ]
            if have == fields:
                return True
        return False

    return check


def _holds(value: str) -> Check:
    """The latest secret version (``versions access`` prints the data as stored) equals ``value``."""
    return lambda out: out.removesuffix("\n") == value


def _index_exempt(out: str) -> bool:
    """A field exempt from indexing: its own config (not the ancestor's), with no index."""
    try:
        config = json.loads(out).get("indexConfig") or {}
    except (ValueError, AttributeError):
        return False
    return not config.get("usesAncestorConfig", True) and not config.get("indexes")


def _apis(d: Deployment) -> Iterator[Step]:
    apis = (
        "cloudfunctions",
        "run",
        "cloudbuild",
        "artifactregistry",
        "cloudtasks",
        "cloudscheduler",
        "secretmanager",
        "firestore",
        "iam",
        "logging",
    )
    yield Step("APIs", _g("services", "enable", *(f"{a}.googleapis.com" for a in apis), f"--project={d.project}"))


def _accounts(d: Deployment) -> Iterator[Step]:
    roles = {
        **{name: f"runtime of the {name} function" for name in FUNCTIONS},
        "tasks": "OIDC identity of Cloud Tasks calls to dispatch",
        "scheduler": "OIDC identity of Cloud Scheduler calls to the reaper",
    }
    for role, description in roles.items():
        yield Step(
            f"service account gpuq-{role}",
            describe=_g("iam", "service-accounts", "describe", d.sa(role), f"--project={d.project}"),
            create=_g(
                "iam",
                "service-accounts",
                "create",
                f"gpuq-{role}",
                f"--project={d.project}",
                f"--display-name=gpuq {role}",
                f"--description={description}",
            ),
        )
    for name in FUNCTIONS:  # Firestore for every function, nothing else project-wide
        yield Step(
            f"Firestore access of gpuq-{name}",
            _g(
                "projects",
                "add-iam-policy-binding",
                d.project,
                f"--member=serviceAccount:{d.sa(name)}",
                "--role=roles/datastore.user",
                "--condition=None",
            ),
        )


def _firestore(d: Deployment, indexes: dict[str, list[dict[str, object]]]) -> Iterator[Step]:
    db = f"--database={d.database}"
    yield Step(
        "Firestore database",
        describe=_g("firestore", "databases", "describe", db, f"--project={d.project}"),
        create=_g(
            "firestore",
            "databases",
            "create",
            db,
            f"--location={d.firestore_location or d.region}",
            "--type=firestore-native",
            f"--project={d.project}",
        ),
    )
    listing = _g("firestore", "indexes", "composite", "list", db, f"--project={d.project}", "--format=json")
    for index in indexes.get("indexes", []):
        collection = str(index["collectionGroup"])
        fields = [(str(f["fieldPath"]), str(f["order"]).lower()) for f in index["fields"]]  # type: ignore[attr-defined]
        yield Step(
            f"index {collection}({', '.join(f for f, _ in fields)})",
            describe=listing,
            current=_index_present(collection, fields),
            current_note="unless it is listed already",
            create=_g(
                "firestore",
                "indexes",
                "composite",
                "create",
                f"--collection-group={collection}",
                f"--query-scope={str(index.get('queryScope', 'COLLECTION')).lower()}",
                *(f"--field-config=field-path={f},order={o}" for f, o in fields),
                db,
                f"--project={d.project}",
                "--async",
            ),
        )
    for override in indexes.get("fieldOverrides", []):
        if override.get("indexes") == []:
            where = (
                str(override["fieldPath"]),
                f"--collection-group={override['collectionGroup']}",
                db,
                f"--project={d.project}",
            )
            yield Step(
                f"no index on {override['collectionGroup']}.{override['fieldPath']}",
                describe=_g("firestore", "indexes", "fields", "describe", *where, "--format=json"),
                current=_index_exempt,
                current_note="unless it is exempt from indexing already",
                create=_g("firestore", "indexes", "fields", "update", *where, "--disable-indexes", "--async"),
            )


def _secrets(d: Deployment) -> Iterator[Step]:
    for name in d.secrets():
        yield Step(
            f"secret {name}",
            describe=_g("secrets", "describe", name, f"--project={d.project}"),
            create=_g(
                "secrets", "create", name, "--replication-policy=automatic", "--labels=gpuq=1", f"--project={d.project}"
            ),
        )
        yield Step(
            f"value of secret {name}",
            describe=_g("secrets", "versions", "access", "latest", f"--secret={name}", f"--project={d.project}"),
            current=_holds(d.settings[name]),
            current_note="unless the latest version already holds the value",
            create=_g("secrets", "versions", "add", name, "--data-file=-", f"--project={d.project}"),
            stdin=name,
        )
        for function, spec in FUNCTIONS.items():
            if name in spec.secrets:
                yield Step(
                    f"gpuq-{function} reads {name}",
                    _g(
                        "secrets",
                        "add-iam-policy-binding",
                        name,
                        f"--member=serviceAccount:{d.sa(function)}",
                        "--role=roles/secretmanager.secretAccessor",
                        f"--project={d.project}",
                    ),
                )


def _queues(d: Deployment) -> Iterator[Step]:
    where = (f"--location={d.region}", f"--project={d.project}")
    for kind, spec in QUEUES.items():
        queue = d.queue_name(kind)
        limits = (
            f"--max-dispatches-per-second={spec.max_dispatches_per_second:g}",
            f"--max-concurrent-dispatches={spec.max_concurrent_dispatches}",
            f"--max-attempts={spec.max_attempts}",
            f"--min-backoff={spec.min_backoff}",
            f"--max-backoff={spec.max_backoff}",
            f"--max-doublings={spec.max_doublings}",
            f"--max-retry-duration={spec.max_retry_duration}",
        )
        yield Step(
            f"queue {queue}",
            describe=_g("tasks", "queues", "describe", queue, *where),
            create=_g("tasks", "queues", "create", queue, *where, *limits),
            update=_g("tasks", "queues", "update", queue, *where, *limits),
        )
    for function, fspec in FUNCTIONS.items():
        for kind, role in fspec.queue_roles:
            yield Step(
                f"gpuq-{function} {role.rsplit('.', 1)[-1]} on {d.queue_name(kind)}",
                _g(
                    "tasks",
                    "queues",
                    "add-iam-policy-binding",
                    d.queue_name(kind),
                    *where,
                    f"--member=serviceAccount:{d.sa(function)}",
                    f"--role={role}",
                ),
            )
        # Creating a task that carries gpuq-tasks' OIDC token means acting as gpuq-tasks.
        yield Step(
            f"gpuq-{function} may sign tasks as gpuq-tasks",
            _g(
                "iam",
                "service-accounts",
                "add-iam-policy-binding",
                d.sa("tasks"),
                f"--member=serviceAccount:{d.sa(function)}",
                "--role=roles/iam.serviceAccountUser",
                f"--project={d.project}",
            ),
        )


def _functions(d: Deployment) -> Iterator[Step]:
    d.out_dir.mkdir(parents=True, exist_ok=True)
    env_file = d.out_dir / "env.yaml"
    env_file.write_text(json.dumps(d.env(), indent=2, sort_keys=True) + "\n")  # JSON is YAML
    ovh = d.settings.get("GPUQ_PROVIDER") == "ovh"
    if ovh and (d.ovhai_binary is None or not d.ovhai_binary.is_file()):
        raise ValueError(
            "GPUQ_PROVIDER=ovh: pass --ovhai-binary with the Linux x86-64 ovhai CLI to package with "
            "the functions (README: Run on OVH AI Deploy)"
        )
    for name, spec in FUNCTIONS.items():
        source = package_function(name, d.out_dir / "functions")
        if ovh and d.ovhai_binary is not None and any(s in spec.secrets for s in _PROVIDER_SECRETS):
            (source / "bin").mkdir()
            shutil.copy2(d.ovhai_binary, source / "bin" / "ovhai")
            (source / "bin" / "ovhai").chmod(0o755)
        secrets = ",".join(f"{s}={s}:latest" for s in spec.secrets if s in d.secrets())
        flags = [
            f"--region={d.region}",
            f"--project={d.project}",
            "--gen2",
            f"--runtime={d.runtime}",
            f"--source={source}",
            f"--entry-point={name}",
            "--trigger-http",
            "--allow-unauthenticated" if spec.public else "--no-allow-unauthenticated",
            f"--service-account={d.sa(name)}",
            f"--env-vars-file={env_file}",
            f"--memory={spec.memory}",
            "--cpu=1",
            f"--timeout={spec.timeout_s}s",
            f"--concurrency={spec.concurrency}",
            "--min-instances=0",
            f"--max-instances={spec.max_instances}",
        ]
        if secrets:
            flags.append(f"--set-secrets={secrets}")
        # What the function is made of — its code, settings and flags, not where the files were built.
        portable = [f for f in flags if not f.startswith(("--source=", "--env-vars-file="))]
        fingerprint = hashlib.sha256(
            (tree_hash(source) + env_file.read_text() + "\0".join(portable)).encode()
        ).hexdigest()[:16]
        flags.append(f"--update-labels=gpuq=1,gpuq-deploy={fingerprint}")
        fn = d.function_name(name)
        yield Step(
            f"function {fn}",
            describe=_g(
                "functions", "describe", fn, "--gen2", f"--region={d.region}", f"--project={d.project}", "--format=json"
            ),
            current=_labels_match("gpuq-deploy", fingerprint),
            current_note=f"unless its gpuq-deploy label is already {fingerprint}",
            create=_g("functions", "deploy", fn, *flags),
        )
        if not spec.public:
            invoker = "tasks" if name == "dispatch" else "scheduler"
            yield Step(
                f"gpuq-{invoker} may invoke {fn}",
                _g(
                    "functions",
                    "add-invoker-policy-binding",
                    fn,
                    f"--region={d.region}",
                    f"--project={d.project}",
                    f"--member=serviceAccount:{d.sa(invoker)}",
                ),
            )


def _scheduler(d: Deployment) -> Iterator[Step]:
    url = d.function_url("reaper")
    where = (f"--location={d.region}", f"--project={d.project}")
    job = (
        "gpuq-reaper",
        *where,
        f"--schedule={d.schedule}",
        "--time-zone=Etc/UTC",
        f"--uri={url}",
        "--http-method=POST",
        f"--oidc-service-account-email={d.sa('scheduler')}",
        f"--oidc-token-audience={url}",
        "--attempt-deadline=300s",
    )
    yield Step(
        "scheduler job gpuq-reaper",
        describe=_g("scheduler", "jobs", "describe", "gpuq-reaper", *where),
        create=_g("scheduler", "jobs", "create", "http", *job),
        update=_g("scheduler", "jobs", "update", "http", *job),
    )


def plan(d: Deployment, *, indexes_file: Path = INDEXES_FILE) -> list[Step]:
    """Every step of a deployment, in order. Packages the functions into ``d.out_dir`` as a side effect."""
    indexes = json.loads(indexes_file.read_text())
    return [
        *_apis(d),
        *_accounts(d),
        *_firestore(d, indexes),
        *_secrets(d),
        *_queues(d),
        *_functions(d),
        *_scheduler(d),
    ]


# --- running or printing it -----------------------------------------------------------------------
@dataclass(frozen=True)
class GcloudResult:
    returncode: int
    stdout: str
    stderr: str


class Gcloud(Protocol):
    def __call__(self, argv: Sequence[str], *, stdin: str | None = None) -> GcloudResult: ...


def run_gcloud(argv: Sequence[str], *, stdin: str | None = None) -> GcloudResult:
    proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=1800)
    return GcloudResult(proc.returncode, proc.stdout, proc.stderr)


def render(steps: Sequence[Step]) -> str:
    """The dry run: every command, in order, with the condition under which each one runs."""
    lines: list[str] = []
    for step in steps:
        lines.append(f"# {step.what}")
        stdin = f"  # stdin: the value of {step.stdin}" if step.stdin else ""
        if step.describe is None:
            lines.append(shlex.join(step.create) + stdin)
            continue
        lines.append(shlex.join(step.describe) + (" >/dev/null" if step.stdin else ""))
        if step.current is not None:
            lines.append(f"#   then, {step.current_note}:")
            lines.append(shlex.join(step.create) + stdin)
        elif step.update is None:
            lines.append("#   then, if missing:")
            lines.append(shlex.join(step.create) + stdin)
        else:
            lines.append("#   then, if missing:")
            lines.append(shlex.join(step.create) + stdin)
            lines.append("#   or, if present:")
            lines.append(shlex.join(step.update) + stdin)
    return "\n".join(lines) + "\n"


def execute(
    steps: Sequence[Step], settings: dict[str, str], gcloud: Gcloud = run_gcloud, say: Callable[[str], None] = print
) -> dict[str, int]:
    """Apply the plan. Returns how many steps were created, updated, unchanged, applied."""
    counts = {"created": 0, "updated": 0, "unchanged": 0, "applied": 0}
    for step in steps:
        stdin = settings[step.stdin] if step.stdin else None
        command: tuple[str, ...] | None = step.create
        outcome = "applied"
        if step.describe is not None:
            described = gcloud(step.describe)
            if step.current is not None:
                command, outcome = (
                    (None, "unchanged")
                    if described.returncode == 0 and step.current(described.stdout)
                    else (step.create, "updated" if described.returncode == 0 else "created")
                )
            elif described.returncode == 0:
                command, outcome = (step.update, "updated") if step.update else (None, "unchanged")
            else:
                outcome = "created"
        if command is not None:
            result = gcloud(command, stdin=stdin)
            if result.returncode != 0:
                message = result.stderr.strip()
                if stdin:
                    message = message.replace(stdin, "***")
                raise DeployError(
                    f"{step.what}: {shlex.join(command[:4])} … failed ({result.returncode}): {message[-800:]}"
                )
        counts[outcome] += 1
        say(f"{outcome:>9}  {step.what}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpuq deploy", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--project", required=True, help="GCP project id")
    parser.add_argument("--region", required=True, help="region of the functions, queues and scheduler job")
    parser.add_argument("--settings", required=True, type=Path, help="KEY=VALUE file (see infra/settings.example.env)")
    parser.add_argument("--out-dir", type=Path, default=Path("build/deploy"), help="where packages are built")
    parser.add_argument("--firestore-location", default="", help="Firestore location (default: the region)")
    parser.add_argument("--schedule", default="* * * * *", help="reaper schedule (cron, UTC)")
    parser.add_argument("--runtime", default="python311", help="Cloud Functions Python runtime")
    parser.add_argument(
        "--ovhai-binary",
        type=Path,
        default=None,
        help="with GPUQ_PROVIDER=ovh: the Linux x86-64 ovhai CLI, packaged with the functions",
    )
    parser.add_argument("--dry-run", action="store_true", help="print every gcloud command; run none")
    args = parser.parse_args(argv)
    deployment = Deployment(
        project=args.project,
        region=args.region,
        settings=read_settings_file(args.settings),
        out_dir=args.out_dir,
        firestore_location=args.firestore_location,
        schedule=args.schedule,
        runtime=args.runtime,
        ovhai_binary=args.ovhai_binary,
    )
    try:
        steps = plan(deployment)
    except ValueError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 2
    for name in deployment.unused_secrets():
        print(f"deploy: {name} is not stored: no function uses it", file=sys.stderr)
    if args.dry_run:
        sys.stdout.write(render(steps))
        return 0
    try:
        counts = execute(steps, deployment.settings)
    except DeployError as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"done: {counts}. Jobs API: {deployment.function_url('enqueue')}/v1/jobs · "
        f"agent ready URL (GPUQ_AGENT_READY_URL): {deployment.function_url('trigger')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
