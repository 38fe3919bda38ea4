"""Vast's PyWorker (``vastai`` 1.9.1, ``vastai.serverless.server``) in front of the Ollama stand-in.

Runs in the ``vastai`` venv (``.venv/vastai/bin/python bench/pyworker_worker.py``), not in ours: it
imports nothing from gpuq. Configured the way Vast's Ollama-style workers are: one handler on
``/api/generate`` with parallel requests allowed and the default streaming pass-through, a
``BenchmarkConfig`` (PyWorker benchmarks the model once before it calls itself loaded), the model
server's log tailed for its "listening" line, and a health check on ``/api/version``.

Settings come from the environment the benchmark sets (the same names Vast sets on a worker):
``WORKER_PORT``, ``WORKER_HTTP_PORT``, ``REPORT_ADDR`` (the fake autoscaler), ``UNSECURED``,
``CONTAINER_ID``, ``PUBLIC_IPADDR``, ``VAST_TCP_PORT_<WORKER_PORT>``, plus ours: ``BENCH_MODEL_PORT``,
``BENCH_MODEL_LOG``, ``BENCH_MODEL``.
"""

from __future__ import annotations

import os

from vastai.serverless.server.worker import (  # type: ignore[import-not-found,unused-ignore]
    BenchmarkConfig,
    HandlerConfig,
    LogActionConfig,
    Worker,
    WorkerConfig,
)

MODEL_LOADED_LINE = "fake ollama listening on"  # what the stand-in prints once it serves


def main() -> None:
    model = os.environ.get("BENCH_MODEL", "llama3.2:1b")
    benchmark = BenchmarkConfig(
        dataset=[{"model": model, "prompt": "benchmark", "stream": True, "options": {"num_predict": 8}}],
        runs=1,
        concurrency=1,
    )
    config = WorkerConfig(
        model_server_url="http://127.0.0.1",
        model_server_port=int(os.environ["BENCH_MODEL_PORT"]),
        model_log_file=os.environ["BENCH_MODEL_LOG"],
        model_healthcheck_url="/api/version",
        handlers=[HandlerConfig(route="/api/generate", allow_parallel_requests=True, benchmark_config=benchmark)],
        log_action_config=LogActionConfig(on_load=[MODEL_LOADED_LINE], on_error=["fake-ollama:"]),
    )
    Worker(config).run(host="127.0.0.1")


if __name__ == "__main__":
    main()
