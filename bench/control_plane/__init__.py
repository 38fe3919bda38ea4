"""Control plane: durable enqueues/s, warm enqueue -> first token, agent ready -> first waiting job running.

    .venv/bin/python -m bench.control_plane [--enqueue-requests 1000] [--concurrency 1,4,16,64] [--cycles 5]

Everything runs on the local stack (``DevStack``: Cloud Tasks emulator, the four functions in one
functions-framework process with DevStack's two gunicorn workers, the local provider's agent process,
the Ollama stand-in at 5 ms/token):

1. **store alone**: ``SqliteJobStore.create`` in this process on a fresh file, 1 and 4 threads;
2. **warm enqueue -> first token**: after one cold start (not counted), jobs one at a time through the
   public API: ``POST /v1/jobs``, then ``GET /v1/jobs/{id}/stream`` until the first ``output`` event
   (``JobsClient``, what users run). The model's own time to first token (the stand-in, direct) is
   measured in the same run and subtracted; the agent's and functions' logs give a breakdown;
3. **agent ready -> first waiting job running**, with the ready announcement: the box is stopped, a job
   is submitted, dispatch starts the box and snoozes the task for ``--snooze-s`` (production default 2 s);
   measured from the agent's ``ready`` log line to its ``job ... accepted`` line (the hand-over that
   marks the job running);
4. **durable enqueues/s**: ``POST /v1/jobs`` at each concurrency over keep-alive connections, the job
   queue paused (dispatching is another function's work: tasks accumulate in the emulator); afterwards
   every accepted job must be in the store and have its task in the queue. Before the first level, 200
   untimed enqueues over 16 connections make sure every worker has served once (a worker's first
   enqueue builds its control plane and imports ``google.cloud.tasks``). CPU per accepted job is
   read for each process on the 2 cores: the functions (gunicorn's arbiter and workers), the emulator,
   and this client. The client shares those cores, so it is kept cheap: each request is a prepared
   header plus its body, and of each answer it reads only the status, ``Content-Length`` and
   ``Connection: close``. Every answer is still read whole and every non-202 counted as an error;
5. the same as 3 **without** the announcement, on a second stack whose agents cannot reach ``/trigger``
   (a pass-through proxy refuses it), so only the snoozed task starts the job.

Results: tables on stdout, ``bench/results/control_plane.json``.

The parts: ``cli`` (the command line), ``stacks`` (the local stacks, the box), ``parts`` (1, and the
queue alone), ``warm`` (2), ``ready`` (3 and 5) with ``proxy`` (the refusing pass-through), ``enqueue``
(4), ``timestamps`` and ``stats`` (reading times, summarizing them), ``tables`` (the report and its
targets), ``run`` (``main``).
"""

from __future__ import annotations

from bench.control_plane.run import main

__all__ = ["main"]
