"""gpuq's core: everything the four functions and the agent share. The map, top to bottom::

    shared/
    ├── errors.py settings.py clock.py   the kernel: the error tree, every setting, the injectable clock,
    │   models.py states.py              the pydantic models and the job state machine,
    │   controlplane.py backoff.py       the dependencies a control plane call gets, one retry policy.
    │                                    The kernel imports no group below.
    ├── assembly.py                      builds a ControlPlane from settings (the one place that knows them all)
    ├── jobs/       a job's life: intake, dispatch, handover to the agent, the agent's reports, lifecycle
    │               (snooze, re-drive, leases, finish), SSE streaming, signed callbacks, views, queue task
    │               payloads, the route table and the OpenAPI documents
    ├── boxes/      the GPU boxes: instances (sessions, cold starts), triggering, reaping, and
    │               providers/ (base Protocol, local, ovh, vast/)
    ├── money/      idle policies, cost allocation, the cost report, budgets
    ├── security/   API keys, signed requests and job tokens, webhook signatures, callback URL rules,
    │               OIDC, rate limits
    ├── store/      where state lives: the job store (base Protocol, SQLite, Firestore), the Cloud Tasks
    │               queue, large outputs in a bucket
    │
    │   below this line: dev and test only, never shipped (import-linter and the packaging tests check it)
    ├── tools/      the `gpuq` CLI, its HTTP client and SSE reader, the callback receiver, the dev stack,
    │               the demo, the Vast CLI commands, the deployer
    ├── sim/        the trace-driven simulator of idle policies
    └── fakes/      protocol-faithful stand-ins: Ollama, the Vast.ai API, the ovhai CLI

Groups depend on the kernel; between groups the order is jobs -> boxes -> money, with the exceptions
listed in ``pyproject.toml``'s import-linter contracts.
"""
