"""What gpuq deploys: the functions (entry point, secrets, roles), the queues, the settings file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
FUNCTION_ROOT = "/workspace"  # where Cloud Functions (gen2) puts the deployed source
INDEXES_FILE = REPO_ROOT / "infra" / "firestore.indexes.json"

SECRET_NAMES = (
    "GPUQ_API_KEYS",
    "GPUQ_WEBHOOK_SECRET",
    "GPUQ_EVENT_WEBHOOK_SECRET",
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

__all__ = [
    "FUNCTIONS",
    "FUNCTION_ROOT",
    "INDEXES_FILE",
    "PROVIDER_SECRETS",
    "QUEUES",
    "REPO_ROOT",
    "SECRET_NAMES",
    "FunctionSpec",
    "QueueSpec",
    "read_settings_file",
]

"""Settings that are secrets: kept in Secret Manager (secret id = the variable's name), never in env files.
One that no function uses (the reaper token once OIDC guards the reaper; a box's own agent secret) is left
out of both."""

PROVIDER_SECRETS = ("VASTAI_API_KEY", "OVH_TOKEN", "OVH_APP_TOKEN", "OVH_APP_BASIC_AUTH")
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
        # agent reports, the OpenAI front door and the dashboard (/ui), on the same URLs
        modules=("agent_reports.py", "openai_front.py", "ui.py"),
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
        secrets=("GPUQ_TRIGGER_TOKEN", "GPUQ_AGENT_MASTER_SECRET", "GPUQ_TASK_SECRET", *PROVIDER_SECRETS),
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
            "GPUQ_EVENT_WEBHOOK_SECRET",  # event webhooks are delivered from the callback queue too
            *PROVIDER_SECRETS,
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
        secrets=("GPUQ_TASK_SECRET", "GPUQ_AGENT_MASTER_SECRET", *PROVIDER_SECRETS, *_BLOB_SECRETS),
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
