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
import sys
from collections.abc import Sequence
from pathlib import Path

from shared.errors import DeployError
from shared.tools.deploy.gcloud import GcloudResult, execute, render
from shared.tools.deploy.packaging import DEV_ONLY, package_function, tree_hash
from shared.tools.deploy.plan import Deployment, Step, plan
from shared.tools.deploy.spec import FUNCTIONS, QUEUES, SECRET_NAMES, FunctionSpec, QueueSpec, read_settings_file

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
    "execute",
    "main",
    "package_function",
    "plan",
    "read_settings_file",
    "render",
    "tree_hash",
]


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
