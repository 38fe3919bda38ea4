"""The plan: every resource as a describe / create / update step, in dependency order."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.boxes.pools import parse_pools
from shared.tools.deploy.events import pubsub_steps, ttl_step
from shared.tools.deploy.packaging import package_function, tree_hash
from shared.tools.deploy.spec import (
    FUNCTION_ROOT,
    FUNCTIONS,
    INDEXES_FILE,
    PROVIDER_SECRETS,
    QUEUES,
    SECRET_NAMES,
    FunctionSpec,
)
from shared.tools.deploy.step import Check, Step
from shared.tools.deploy.step import g as _g

__all__ = ["Check", "Deployment", "Step", "plan"]


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
        plain.setdefault("GPUQ_LOG_FORMAT", "json")  # one JSON object per line, as Cloud Logging reads them
        if self.settings.get("GPUQ_POOLS_FILE"):
            plain["GPUQ_POOLS_FILE"] = f"{FUNCTION_ROOT}/{POOLS_NAME}"  # packaged beside the code
        if self.settings.get("GPUQ_PROVIDER") == "ovh":
            plain["OVH_CLI"] = f"{FUNCTION_ROOT}/bin/ovhai"  # packaged beside the code: the runtime has none
        return dict(sorted(plain.items()))


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
    for collection in ("gpuq_nonces", "gpuq_events"):  # replay nonces and events expire on their own
        yield ttl_step(d.project, db, collection)
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


def _deploy_flags(d: Deployment, name: str, spec: FunctionSpec, source: Path, env_file: Path) -> list[str]:
    """``gcloud functions deploy`` flags of one function (its labels are added by the caller)."""
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
    secrets = ",".join(f"{s}={s}:latest" for s in spec.secrets if s in d.secrets())
    if secrets:
        flags.append(f"--set-secrets={secrets}")
    return flags


POOLS_NAME = "pools.toml"


def _pools_file(d: Deployment) -> Path | None:
    """The settings' pools file, checked before anything is deployed (a bad file fails here, not in production)."""
    given = d.settings.get("GPUQ_POOLS_FILE")
    if not given:
        return None
    path = Path(given)
    try:
        parse_pools(path.read_text(), source=str(path))
    except OSError as exc:
        raise ValueError(f"GPUQ_POOLS_FILE={path}: {exc.strerror}") from None
    return path


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
    pools = _pools_file(d)
    for name, spec in FUNCTIONS.items():
        source = package_function(name, d.out_dir / "functions")
        if pools is not None:
            shutil.copy2(pools, source / POOLS_NAME)
        if ovh and d.ovhai_binary is not None and any(s in spec.secrets for s in PROVIDER_SECRETS):
            (source / "bin").mkdir()
            shutil.copy2(d.ovhai_binary, source / "bin" / "ovhai")
            (source / "bin" / "ovhai").chmod(0o755)
        flags = _deploy_flags(d, name, spec, source, env_file)
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
        *pubsub_steps(d),
        *_functions(d),
        *_scheduler(d),
    ]
