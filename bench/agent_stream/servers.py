"""The processes measured besides PyWorker: the Ollama stand-in and the OpenAI-compatible one, the control plane
(``DevStack``), gpuq's agents (one per backend).

Every process is started with ``bench.procs.spawn`` and appended to ``procs`` as soon as it runs,
so the caller stops whatever was started even when a later one fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.agent_stream.constants import HOST, MODEL, REPO, log
from bench.procs import Proc, children, find_child, spawn
from shared.tools.devstack import DevStack, DevStackConfig, free_port

__all__ = [
    "functions_pid",
    "renice_control_plane",
    "start_agent",
    "start_control_plane",
    "start_ollama",
    "start_openai_server",
]


def start_ollama(work: Path, token_delay_ms: float, tokens: int, procs: list[Proc]) -> tuple[int, str, Path]:
    """The Ollama stand-in, answering: its port, URL and log file (PyWorker's readiness check reads the log)."""
    ollama_port = free_port()
    ollama_url = f"http://{HOST}:{ollama_port}"
    ollama_log = work / "logs" / "fake-ollama.log"
    ollama = spawn(
        "fake-ollama",
        [
            sys.executable,
            "-m",
            "shared.fakes.ollama",
            "--host",
            HOST,
            "--port",
            str(ollama_port),
            "--token-delay-ms",
            str(token_delay_ms),
            "--load-delay-ms",
            "50",
            "--default-num-tokens",
            str(tokens),
        ],
        ollama_log,
        cwd=REPO,
    )
    procs.append(ollama)
    ollama.wait_http(ollama_url + "/")
    return ollama_port, ollama_url, ollama_log


def start_openai_server(work: Path, token_delay_ms: float, tokens: int, procs: list[Proc]) -> tuple[int, str]:
    """The OpenAI-compatible stand-in (vLLM-like), loaded: its port and URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "shared.fakes.openai_server", "--host", HOST, "--port", str(port)]
    argv += ["--token-delay-ms", str(token_delay_ms), "--load-delay-ms", "50", "--default-num-tokens", str(tokens)]
    server = spawn("fake-openai", argv, work / "logs" / "fake-openai.log", cwd=REPO)
    procs.append(server)
    server.wait_http(url + "/health")
    return port, url


def start_control_plane(work: Path, ollama_url: str) -> DevStack:
    """The real control plane: Cloud Tasks emulator, the four functions, the SQLite store."""
    return DevStack(
        DevStackConfig(
            port=free_port(),
            data_dir=work / "stack",
            ollama_url=ollama_url,
            reaper_period_s=3600.0,
            idle_grace_s=3600.0,
        )
    ).start()


def functions_pid() -> int:
    """The functions-framework process DevStack started (a child of this process)."""
    pid = find_child(os.getpid(), b"functions_framework")
    if pid is None:
        raise RuntimeError("the functions process of the dev stack was not found")
    return pid


def renice_control_plane() -> None:
    """The control plane runs elsewhere in production, not on the GPU box: here it only gets spare CPU."""
    me = os.getpid()
    for marker in (b"functions_framework", b"gcloud_tasks_emulator"):
        pid = find_child(me, marker)
        todo = [pid] if pid else []
        while todo:
            current = todo.pop()
            os.setpriority(os.PRIO_PROCESS, current, 19)
            todo += children(current)


def start_agent(
    work: Path,
    secret: str,
    ollama_url: str,
    procs: list[Proc],
    agent_path: Path | None = None,
    extra_env: dict[str, str] | None = None,
    name: str = "agent",
) -> tuple[Proc, int]:
    port = free_port()
    env = {
        "GPUQ_AGENT_SECRET": secret,
        "GPUQ_AGENT_HOST": HOST,
        "GPUQ_AGENT_PORT": str(port),
        "GPUQ_AGENT_INSTANCE_ID": "bench-agent",
        "GPUQ_AGENT_PROVIDER": "none",
        "GPUQ_AGENT_OLLAMA_URL": ollama_url,
        "GPUQ_AGENT_PRELOAD_MODELS": MODEL,
        "GPUQ_AGENT_IDLE_GRACE_S": "86400",
        "GPUQ_AGENT_MAX_CONCURRENT_JOBS": "64",
        **(extra_env or {}),
    }
    if agent_path is not None:  # a proposed change, measured before it lands (`-m` puts the cwd first on sys.path)
        env["PYTHONPATH"] = os.pathsep.join([str(agent_path), str(REPO), os.environ.get("PYTHONPATH", "")])
    agent = spawn(name, [sys.executable, "-m", "agent"], work / "logs" / f"{name}.log", env=env, cwd=agent_path or REPO)
    procs.append(agent)
    agent.wait_http(f"http://{HOST}:{port}/health", ok=300)  # 200 once the model is loaded
    if agent_path is not None:
        log(f"agent runs from {agent_path}")
    return agent, port
