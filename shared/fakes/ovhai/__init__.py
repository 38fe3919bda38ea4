"""A stand-in for the ``ovhai`` CLI (OVHcloud AI Deploy apps), for tests and the dev stack.

Run as ``python -m shared.fakes.ovhai ...`` (tests install an ``ovhai`` wrapper script on ``PATH``).
Each call is a separate process, as with the real CLI; the apps live in one JSON state file
(``OVHAI_FAKE_STATE``), guarded by an ``flock``, and every call is recorded there with its arguments.

Reproduced: ``app run`` (``--name --flavor --gpu --cpu --default-http-port --unsecure-http --label k=v
--env K=V --volume container@alias[/prefix]:mount[:perm][:cache]``, the image, and a command after it),
``app start``, ``app stop``, ``app get``, ``app delete``, ``app list``; ``-o json`` prints the app
documents the way ``ovhai`` does (``id``, ``createdAt``, ``updatedAt``, ``user``, ``spec``, ``status``
with ``state``, ``url``, ``availableReplicas``, ``info``, ``history``, ``lastTransitionDate``); without
``-o json`` a short table. States move with time like AI Deploy's: ``run``/``start`` go through
QUEUED → INITIALIZING → RUNNING, ``stop`` through STOPPING → STOPPED, ``delete`` through DELETING and
then the app is gone (``get`` fails: not found). Starting an app that is not stopped, or stopping one
that is not running, fails as the service refuses it.

Scenario knobs (the ``config`` object of the state file, see :func:`configure`):
    ``timings``   seconds spent in QUEUED, INITIALIZING, STOPPING, DELETING;
    ``token``     if set, every call must carry ``--token <it>`` (else: exit 1, unauthorized);
    ``fail``      one-shot failures: ``{"start": "message"}`` makes the next ``app start`` exit 1;
    ``no_capacity`` a start or run ends in FAILED ("not enough resources") instead of RUNNING;
    ``launch``    ``{"command": [...], "env": {...}, "port_env": "GPUQ_AGENT_PORT"}``: on run/start, start
                  this process (its own session; the app's env vars, then ``env``, then the port it must
                  listen on as ``PORT`` and as ``port_env``) and report ``http://127.0.0.1:PORT`` as the app
                  URL; stop and delete terminate it. With ``python -m agent`` as the command, the control
                  plane drives a real local agent through this "OVH" box.

Modules: ``statefile`` the locked state file; ``install`` the wrapper script; ``apps`` an app's states over
time and its JSON document; ``process`` the launched process; ``commands`` what each verb does; ``cli`` the
command line (``python -m shared.fakes.ovhai``).
"""

from __future__ import annotations

from shared.fakes.ovhai.cli import main
from shared.fakes.ovhai.install import install
from shared.fakes.ovhai.statefile import configure, read_state

__all__ = ["configure", "install", "main", "read_state"]
