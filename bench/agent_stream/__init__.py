"""Agent streaming overhead: model server direct vs. gpuq's agent (both backends) vs. Vast's PyWorker, same run.

    .venv/bin/python -m bench.agent_stream [--rounds 12] [--streams 1,8,32] [--tokens 200] [--max-s 480]

Every server is its own process, so each proxy's CPU is read from ``/proc/<pid>/stat``:

- **direct**: the Ollama stand-in (``python -m shared.fakes.ollama``), ``POST /api/generate`` streaming,
  5 ms per token, 200-token streams (``options.num_predict``);
- **gpuq**: the agent (``python -m agent``, production settings except ``MAX_CONCURRENT_JOBS=64``) at
  ``POST /v1/stream``, each request signed with ``RequestSigner``. Progress reports and chunk storage
  are on and go to the real control plane: the four functions in their functions-framework process
  (``DevStack``), writing the real SQLite store. Each job is put in the store as dispatch leaves it
  (running, attempt 1), so the agent's per-attempt report token is accepted and its reports are applied;
  after the run every job must be ``succeeded`` with its exact text stored;
- **direct-openai**: the OpenAI-compatible stand-in (``python -m shared.fakes.openai_server``, vLLM-like),
  ``POST /v1/completions`` with ``stream`` and ``stream_options.include_usage``, SSE, same pacing;
- **gpuq-openai**: a second agent, on its ``openai`` backend (``GPUQ_AGENT_BACKEND=openai``) in front of that
  stand-in, at ``POST /v1/stream``, reporting to the same control plane; its ratios are against
  **direct-openai** (``--backends ollama,openai`` chooses which pairs run);
- **pyworker**: Vast's PyWorker (``vastai`` 1.9.1) in its own venv, configured by
  ``bench/pyworker_worker.py``, reporting to ``bench/fake_autoscaler.py``; ``UNSECURED=true`` unless
  ``--pyworker-auth`` (then every request carries a real RSA signature it verifies).

Phases, interleaved round-robin over the paths (the first path rotates every round):

1. latency: per round ``--singles`` streams one at a time, then 8, then 32 streams started together;
2. throughput: token delay 0 (set live on the stand-in), bursts of 1 and 32 streams;
3. CPU per request: 1-token streams, 8 at a time.

The client (``bench/ndjson_client.py``) pre-builds every request (signature included) before the clock
starts and stamps each line when it arrives; every stream's text is checked against the stand-in's
deterministic output afterwards. Results: table on stdout, ``bench/results/agent_stream.json``.

The parts: ``cli`` (the command line), ``servers`` and ``pyworker`` (the processes measured),
``routes`` (the paths), ``harness`` and ``phases`` (the load), ``sample`` (what one
(phase, streams, path) measured), ``results`` (rows and targets), ``tables`` (the report), ``run`` (``main``).
"""

from __future__ import annotations

from bench.agent_stream.run import main

__all__ = ["main"]
