"""A fake Vast.ai cloud: Vast's REST API on localhost, whose instances are real local processes.

Faithful enough that the official ``vastai`` 1.9.1 CLI works against it (``VAST_URL=http://127.0.0.1:PORT``
or ``--url``; the CLI reads its key from ``--api-key`` or ``VAST_API_KEY``), and so does gpuq's provider.

Reproduced (request and response shapes as the ``vastai`` 1.9.1 package sends and reads them)
    * ``GET /api/v0/instances/{id}/`` → ``{"instances": {...}}``, ``{"instances": null}`` once gone.
    * ``GET /api/v1/instances/?select_filters=<json>&order_by=<json>&limit=1..25[&after_token=…]`` →
      ``{"success", "instances_found", "total_instances", "label_counts", "next_token", "instances"}``;
      filters ``eq/neq/in/notin/gt/gte/lt/lte`` on any row field. ``GET /api/v0/instances/`` → 410
      (the retired list).
    * ``PUT /api/v0/instances/{id}/`` ``{"state": "running"|"stopped"}`` or ``{"label": …}`` →
      ``{"success": true}``; ``DELETE /api/v0/instances/{id}/`` → ``{"success": true, "msg": …}``.
    * ``POST /api/v0/bundles/`` (also ``GET ?q=<json>``) → ``{"offers": [...]}`` with Vast's query
      language, ``order``, ``limit``, ``allocated_storage`` (priced into ``dph_total``); the answer's
      ``Content-Type`` is exactly ``application/json`` (the CLI checks it). A rented offer is hidden.
    * ``PUT /api/v0/asks/{offer_id}/`` (the CLI's create body) → ``{"success": true, "new_contract": id}``.
    * ``GET /api/v0/gpu_names/unique/`` (no auth), ``GET /api/v0/users/current/``,
      ``GET /api/v0/instances/filters/``.
    * Rows carry every field the CLI reads (``start_date``, ``extra_env`` as ``[name, value]`` pairs,
      ``ports``, ``public_ipaddr``, ``dph_total``, ``actual_status``/``intended_status``/``cur_state``,
      ``status_msg``, ``uptime_mins``…).
    * Errors as ``{"success": false, "error": "...", "msg": "..."}``; a bad key → 401 (configurable
      403/404) ``auth_error`` / ``Invalid user key``. Rate limits: a minimum interval per endpoint and
      key (``rate_limits_s``); a 429 body is plain text ``API requests too frequent: endpoint
      threshold=…`` every ``rate_limit_text_every``-th time, JSON otherwise; no Retry-After.

Instances
    create → ``actual_status`` null ("scheduling") → ``loading`` after ``schedule_delay_s`` →
    ``running`` after ``loading_delay_s``; stop → ``intended_status: stopped`` at once, the process
    is signalled after ``stop_delay_s`` (SIGTERM to its process group, SIGKILL after
    ``stop_grace_s``) and then ``actual_status: stopped``. On every entry to ``running`` each port
    asked for with ``-p N:N`` in the env (and 22 for ssh launch modes) gets a fresh host port, so the
    agent's public port changes across restarts, as on Vast. The instance's command (``command``, or
    ``image_commands[image]``) runs with the instance's env plus ``GPUQ_AGENT_PORT=<mapped host port>``,
    ``GPUQ_AGENT_HOST=127.0.0.1``, ``CONTAINER_ID``, ``CONTAINER_API_KEY`` (a key that can only
    show/start/stop/destroy this instance), ``VAST_URL``, ``PUBLIC_IPADDR``, ``VAST_TCP_PORT_<n>``,
    ``GPUQ_AGENT_PROVIDER=vast`` and ``GPUQ_AGENT_INSTANCE_ID=<id>`` (unless the instance's env sets
    its own). A process that dies by itself leaves the instance ``exited``.

Not reproduced
    Billing, volumes, templates (``template_hash_id`` is stored, not expanded), bids/interruptible
    preemption, ssh, logs/execute, bulk endpoints, the ``/search/asks/`` endpoint, machine
    hosting, the real scheduler (a "stuck" start is a fault you arm), max-calls-per-period limits.

Test hooks (``/__fake__/*``; GET ``calls`` and ``faults`` are open, the rest needs the account key)
    ``GET /__fake__/calls`` (``DELETE`` resets): calls and statuses per endpoint name (``show``,
    ``list``, ``manage``, ``destroy``, ``bundles``, ``create``, ``gpu_names``, ``user``, ``filters``,
    ``list_v0``). ``GET/POST/DELETE /__fake__/faults``: arm :class:`FakeVastFaults` and change the
    delays and rate limits while running. ``GET /__fake__/instances``: internal view (pid, ports,
    container keys).

Modules
    ``offers`` the machines for rent; ``config`` settings and injectable faults; ``instances`` an
    instance and its row; ``state`` what a running fake knows; ``processes`` the local processes that
    stand in for containers; ``transitions`` start, stop and destroy over time; ``wire`` JSON in and out;
    ``auth`` account and container keys; ``edge`` counters, rate limits, 429/5xx faults; ``query`` Vast's
    query language; ``endpoints`` the API; ``hooks`` and ``control`` the test hooks and their client;
    ``app`` routes and servers; ``cli`` the command line.

Run it with ``python -m shared.fakes.vast --port 8081`` (key from ``VASTAI_API_KEY``), in-process
with :func:`start_fake_vast`, or from synchronous tests with :func:`serve_in_thread`.
"""

from __future__ import annotations

from shared.fakes.vast.app import FakeVastServer, build_app, serve_in_thread, start_fake_vast
from shared.fakes.vast.cli import main
from shared.fakes.vast.config import FakeVastConfig, FakeVastFaults
from shared.fakes.vast.control import FakeVastControl
from shared.fakes.vast.offers import DEFAULT_OFFERS, FakeOffer
from shared.fakes.vast.state import FakeVastState

__all__ = [
    "DEFAULT_OFFERS",
    "FakeOffer",
    "FakeVastConfig",
    "FakeVastControl",
    "FakeVastFaults",
    "FakeVastServer",
    "FakeVastState",
    "build_app",
    "main",
    "serve_in_thread",
    "start_fake_vast",
]
