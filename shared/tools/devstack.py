"""Start and stop the local stack: Cloud Tasks emulator, Ollama stand-in (and the OpenAI-compatible one when a
pool's boxes use the openai backend), the four functions in one process, the local provider's boxes, and a
scheduler loop calling the reaper.

Used by ``gpuq dev`` (foreground), ``gpuq demo`` and the end-to-end tests. Every process it starts
is stopped when it exits, boxes included: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from shared.boxes.providers.local import LocalProvider
from shared.settings import ControlPlaneSettings, split_csv

__all__ = ["WIRED", "DevStack", "DevStackConfig", "free_port"]

log = logging.getLogger("gpuq.devstack")

EMULATOR_STOP_GRACE_S = 8.0
OVH_APP = "gpuq-box-1"
STOP_GRACE_S = 5.0


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the dev stack's process dies, however it dies."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _module_file(module: str) -> str:
    """Path of a module's source without importing it (shared/ must not import functions/)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"cannot find module {module}")
    return spec.origin


WIRED = frozenset({"public_url", "dispatch_url", "tasks_emulator_host"})
"""Settings the dev stack wires itself (its own ports): an exported value would point at nothing."""


@dataclass
class DevStackConfig:
    port: int = 8080
    data_dir: Path = Path(".gpuq")
    # "local"; "vast-fake": the fake Vast API rents boxes that are local agent processes; "ovh-fake": a fake
    # `ovhai` CLI runs an OVH AI Deploy app that is a local agent process.
    provider: str = "local"
    vast_port: int = 8081
    ollama_url: str | None = None  # a real Ollama; None starts the stand-in
    token_delay_s: float = 0.02
    load_delay_s: float = 0.5
    models: str = "llama3.2:1b,qwen2.5:0.5b"
    idle_grace_s: float = 10.0
    reaper_period_s: float = 5.0
    snooze_s: float = 0.5
    api_key: str | None = None  # GPUQ_API_KEYS as the user set it; None: one generated dev key
    vast_api_key: str | None = None  # VASTAI_API_KEY of the fake Vast API; None: a generated one
    # gunicorn worker processes of the functions (functions-framework's WORKERS; THREADS threads each).
    # One worker is one GIL: at ~1.1 ms of CPU per enqueue it tops out near 900/s, so two use both cores of
    # a small machine. Rate limits, replay nonces and box state are in the store, shared by every worker.
    functions_workers: int = 2
    functions_threads: int = 32  # per worker: an SSE stream holds one for its whole length
    extra_env: dict[str, str] = field(default_factory=dict)  # wins over the two above (WORKERS=1 to compare)
    max_boxes: int = 1  # >1 (local provider): one pool "local" of that many boxes, written to <data dir>/pools.toml
    jobs_per_box: int = 4
    pools_file: Path | None = None  # the user's own pools file (wins over max_boxes)
    pull_on_demand: bool = False  # the local pool serves any model, pulling what the model server lacks
    backend: str = "ollama"  # "openai": the local pool's boxes talk to the OpenAI-compatible stand-in
    overrides: dict[str, Any] = field(default_factory=dict)  # ControlPlaneSettings fields (lease_s=2, …)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    grace_s: float


class DevStack:
    """``with DevStack(config) as stack:`` — everything runs until the block ends."""

    def __init__(self, config: DevStackConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self._procs: list[_Proc] = []
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self._reaper_call = threading.Lock()  # held for each reaper call; see scheduler_paused()
        keys = config.api_key or f"dev:gpuq_{secrets.token_urlsafe(24)}"
        self.api_key = split_csv(keys)[0].partition(":")[2] or split_csv(keys)[0]
        self.url = f"http://127.0.0.1:{config.port}"
        self.tasks_port = free_port()
        self.ollama_url = config.ollama_url or f"http://127.0.0.1:{free_port()}"
        self.openai_url = f"http://127.0.0.1:{free_port()}"  # the OpenAI-compatible stand-in, if a pool needs it
        self.vast_url = f"http://127.0.0.1:{config.vast_port}" if config.provider == "vast-fake" else ""
        self.ovh_state = self.data_dir / "ovhai-state.json" if config.provider == "ovh-fake" else None
        self.vast_api_key = ""
        if self.vast_url:
            self.vast_api_key = config.vast_api_key or f"vast_{secrets.token_hex(16)}"
        defaults: dict[str, Any] = {
            "api_keys": keys,
            "trigger_token": secrets.token_urlsafe(24),
            "reaper_token": secrets.token_urlsafe(24),
            "task_secret": secrets.token_urlsafe(32),
            "agent_master_secret": secrets.token_urlsafe(32),
            "job_token_secret": secrets.token_urlsafe(32),
            "webhook_secret": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            "callback_allow_hosts": "127.0.0.1,localhost",
            "callback_allow_http": True,
            "rate_limit_per_min": 100_000.0,
            "data_dir": self.data_dir,
            "public_url": self.url,
            "tasks_emulator_host": f"127.0.0.1:{self.tasks_port}",
            "provider": {"vast-fake": "vast", "ovh-fake": "ovh"}.get(config.provider, config.provider),
            "instance_id": {"vast-fake": "vast-1", "ovh-fake": OVH_APP}.get(config.provider, "local-1"),
            "ollama_url": self.ollama_url,
            "openai_backend_url": self.openai_url,
            "agent_preload_models": split_csv(config.models)[0],
            "agent_idle_grace_s": config.idle_grace_s,
            "snooze_s": config.snooze_s,
            # An OVH box cannot stop itself (no self-stop API from inside): the reaper stops it once idle.
            "reaper_idle_limit_s": config.idle_grace_s + (0.0 if self.ovh_state else 30.0),
        }
        pools_file = self._pools_file()
        if pools_file is not None:
            defaults["pools_file"] = str(pools_file)
        exported = sorted(n for n in ControlPlaneSettings.model_fields if f"GPUQ_{n.upper()}" in os.environ)
        self.from_env = [n for n in exported if n not in WIRED]  # the user's own values: they beat dev defaults
        self.ignored_env = [n for n in exported if n in WIRED]
        for name in self.from_env:
            defaults.pop(name, None)
        self.settings = ControlPlaneSettings(**(defaults | config.overrides))
        self.own_openai = self.settings.openai_backend_url != self.openai_url  # the user's server: no stand-in
        self.openai_url = self.settings.openai_backend_url

    def _pools_file(self) -> Path | None:
        """The user's pools file, or one local pool of ``max_boxes`` boxes (ids ``local-1`` …)."""
        config = self.config
        if config.pools_file is not None:
            return config.pools_file.resolve()
        if config.provider != "local" or (
            config.max_boxes <= 1 and not config.pull_on_demand and config.backend == "ollama"
        ):
            return None
        path = self.data_dir / "pools.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Written by gpuq dev: one pool of local boxes (agent processes on this machine).\n"
            "[pools.local]\n"
            'provider = "local"\n'
            f"models = [{json.dumps('*' if config.pull_on_demand else split_csv(config.models)[0])}]\n"
            f"pull_on_demand = {json.dumps(config.pull_on_demand)}\n"
            f"backend = {json.dumps(config.backend)}\n"
            f"max_boxes = {config.max_boxes}\n"
            f"jobs_per_box = {config.jobs_per_box}\n"
            'idle_policy = "fixed"\n'
            f"idle_grace_s = {config.idle_grace_s}\n"
            "cold_start_s = 2.0\n"
        )
        return path

    # --- environment ----------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The ``GPUQ_*`` environment the functions process gets (and a user could export)."""
        out: dict[str, str] = {}
        for name, value in self.settings.model_dump().items():
            out[f"GPUQ_{name.upper()}"] = str(value)
        if self.ovh_state:
            out.update(OVH_CLI=str(self.data_dir / "bin" / "ovhai"), OVH_IMAGE="gpuq/agent:dev", OVH_APP_NAME=OVH_APP)
        if self.vast_url:
            out.update(
                VASTAI_API_KEY=self.vast_api_key,
                VAST_URL=self.vast_url,
                VASTAI_DEFAULT_IMAGE="gpuq/agent:dev",
                VASTAI_STATE_DIR=str(self.data_dir / "vast"),
            )
        out.update(self.config.extra_env)
        return out

    # --- processes ------------------------------------------------------------------------------
    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, grace_s: float = STOP_GRACE_S
    ) -> subprocess.Popen[bytes]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self._procs.append(_Proc(name, popen, grace_s))
        return popen

    def _wait_http(self, name: str, url: str, popen: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited with {popen.returncode}; see {self.log_dir / (name + '.log')}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not answer at {url} within {timeout_s:.0f}s")

    def _start_emulator(self) -> None:
        import grpc

        popen = self._spawn(
            "tasks-emulator",
            [sys.executable, "-m", "gcloud_tasks_emulator", "start", "--port", str(self.tasks_port), "-q"],
            grace_s=EMULATOR_STOP_GRACE_S,
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{self.tasks_port}")
        try:
            grpc.channel_ready_future(channel).result(timeout=30)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"Cloud Tasks emulator did not start (exit {popen.poll()})") from None
        finally:
            channel.close()
        from shared.store.queue import TaskQueue

        TaskQueue(self.settings).ensure_queues()

    def _start_stand_in(self, name: str, module: str, url: str, answers: str) -> None:
        """A model server stand-in (``shared.fakes.ollama`` or ``shared.fakes.openai_server``) at ``url``."""
        argv = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
        argv += ["--token-delay-ms", str(self.config.token_delay_s * 1000)]
        argv += ["--load-delay-ms", str(self.config.load_delay_s * 1000), "--models", self.config.models]
        popen = self._spawn(name, argv)
        self._wait_http(name, url + answers, popen)

    def _needs_openai(self) -> bool:
        """Whether a pool's boxes talk to the OpenAI-compatible stand-in (``--backend openai``, or a pools file
        with an openai pool that names no server of its own), not to a ``GPUQ_OPENAI_BACKEND_URL`` set."""
        if self.own_openai:
            return False
        if self.config.backend == "openai":
            return True
        path = self.settings.pools_file
        if not path:
            return False
        from shared.boxes.pools import parse_pools

        pools = parse_pools(Path(path).read_text(), source=path)
        return any(pool.backend == "openai" and not pool.backend_url for pool in pools)

    def _start_fake_vast(self) -> None:
        # The boxes stop themselves with the official CLI, as on Vast: the one in .venv/vastai, if installed.
        cli = shutil.which("vastai") or str(Path(sys.executable).parent.parent / "vastai" / "bin" / "vastai")
        popen = self._spawn(
            "fake-vast",
            [
                sys.executable,
                "-m",
                "shared.fakes.vast",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.config.vast_port),
                "--log-dir",
                str(self.log_dir),
                "--env",
                f"GPUQ_AGENT_OLLAMA_URL={self.ollama_url}",
                "--env",
                f"GPUQ_AGENT_VASTAI_CLI={cli}",
            ],
            {"VASTAI_API_KEY": self.vast_api_key},
            grace_s=10.0,
        )
        self._wait_http("fake-vast", self.vast_url + "/api/v0/gpu_names/unique/", popen)

    def _prepare_fake_ovh(self) -> None:
        """Install the fake `ovhai`, and create the app once, as a user does (README: Run on OVH AI Deploy)."""
        from shared.boxes.providers.ovh import OvhProvider
        from shared.fakes import ovhai
        from shared.security.signing import derive_agent_secret
        from shared.settings import OvhSettings

        assert self.ovh_state is not None
        cli = ovhai.install(self.data_dir / "bin", self.ovh_state)
        ovhai.configure(
            self.ovh_state,
            timings={"QUEUED": 0.2, "INITIALIZING": 0.3, "STOPPING": 0.2},
            launch={
                "command": [sys.executable, "-m", "agent"],
                "port_env": "GPUQ_AGENT_PORT",
                "env": {
                    "GPUQ_AGENT_HOST": "127.0.0.1",
                    "GPUQ_AGENT_INSTANCE_ID": OVH_APP,
                    "GPUQ_AGENT_PROVIDER": "none",
                    "GPUQ_AGENT_OLLAMA_URL": self.ollama_url,
                    "GPUQ_AGENT_READY_URL": self.url + "/trigger",
                    "GPUQ_AGENT_PRELOAD_MODELS": self.settings.agent_preload_models,
                    "GPUQ_AGENT_IDLE_POLICY": "fixed",
                    "GPUQ_AGENT_IDLE_GRACE_S": str(self.config.idle_grace_s),
                },
            },
        )
        provider = OvhProvider(OvhSettings(cli=str(cli), image="gpuq/agent:dev", app_name=OVH_APP))
        secret = derive_agent_secret(self.settings.agent_master_secret, OVH_APP)
        asyncio.run(provider.create(env={"GPUQ_AGENT_SECRET": secret}))
        asyncio.run(provider.stop(OVH_APP))

    def boxes(self) -> list[tuple[str, str, int]]:
        """(id, "running" | "stopped", starts) of every box this stack's provider knows."""
        if self.ovh_state is not None:
            from shared.fakes.ovhai import read_state

            apps = read_state(self.ovh_state)["apps"].values()
            return [
                (
                    a["spec"]["name"],
                    "running" if a["_pid"] else "stopped",
                    sum(1 for state, _ in a["_timeline"] if state == "RUNNING"),
                )
                for a in apps
            ]
        if not self.vast_url:
            provider = self.provider()
            return [
                (i.id, "stopped" if i.state.value == "stopped" else "running", provider.start_count(i.id))
                for i in provider.list_sync()
            ]
        view = httpx.get(
            self.vast_url + "/__fake__/instances", timeout=10, headers={"Authorization": f"Bearer {self.vast_api_key}"}
        ).json()
        return [(str(i["id"]), "running" if i["pid"] else "stopped", int(i["starts"])) for i in view["instances"]]

    def box_running(self) -> bool:
        return any(state != "stopped" for _, state, _ in self.boxes())

    def box_starts(self) -> int:
        return sum(starts for _, _, starts in self.boxes())

    def kill_functions(self) -> None:
        """SIGKILL the functions process (fault injection): in-flight requests die mid-way."""
        self._kill("functions")

    def kill_model_server(self) -> None:
        """SIGKILL the Ollama stand-in (fault injection): streams break mid-answer, as a crashed server's do."""
        self._kill("fake-ollama")

    def start_model_server(self) -> None:
        """The Ollama stand-in again, at the same address (as a supervisor or the box's init restarts it)."""
        self._start_stand_in("fake-ollama", "shared.fakes.ollama", self.ollama_url, "/")

    def _kill(self, name: str) -> None:
        for proc in [p for p in self._procs if p.name == name]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.popen.pid, signal.SIGKILL)
            proc.popen.wait(timeout=10)
            self._procs.remove(proc)

    def start_functions(self) -> None:
        self._start_functions()

    def pid(self, name: str) -> int:
        """The pid of a process this stack runs: "tasks-emulator", "functions", "fake-ollama", …"""
        return next(proc.popen.pid for proc in self._procs if proc.name == name)

    def _start_functions(self) -> None:
        workers = {"WORKERS": str(self.config.functions_workers), "THREADS": str(self.config.functions_threads)}
        env = workers | {"PYTHONUNBUFFERED": "1"} | self.env()
        popen = self._spawn(
            "functions",
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--target",
                "gpuq",
                "--source",
                _module_file("functions.devserver"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.config.port),
            ],
            env,
        )
        self._wait_http("functions", self.url + "/healthz", popen)

    def _reaper_loop(self) -> None:
        headers = {"Authorization": f"Bearer {self.settings.reaper_token}"}
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.wait(self.config.reaper_period_s):
                with self._reaper_call:
                    try:
                        client.post(self.url + "/reaper", headers=headers)
                    except httpx.HTTPError as exc:
                        log.warning("reaper call failed: %s", type(exc).__name__)

    @contextlib.contextmanager
    def scheduler_paused(self) -> Iterator[None]:
        """No reaper call runs inside the block (one under way is waited for): the tests reset the
        store and queues of a running stack inside it, and a reaper pass must not act on half of it."""
        with self._reaper_call:
            yield

    def start(self) -> DevStack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_emulator()
            if self.config.ollama_url is None:
                self._start_stand_in("fake-ollama", "shared.fakes.ollama", self.ollama_url, "/")
            if self._needs_openai():  # /health answers 503 while it loads: wait for /v1/models
                self._start_stand_in("fake-openai", "shared.fakes.openai_server", self.openai_url, "/v1/models")
            if self.vast_url:
                self._start_fake_vast()
            if self.ovh_state:
                self._prepare_fake_ovh()
            self._start_functions()
        except BaseException:
            self.stop()
            raise
        self._reaper = threading.Thread(target=self._reaper_loop, name="scheduler", daemon=True)
        self._reaper.start()
        return self

    def provider(self) -> LocalProvider:
        return LocalProvider(self.data_dir / "instances")

    def stop(self) -> None:
        self._stop.set()
        if self._reaper is not None:
            self._reaper.join(timeout=35)
        with contextlib.suppress(Exception):
            for instance in self.provider().list_sync():
                if instance.state.is_up() or instance.state.value == "stopping":
                    self.provider().stop_sync(instance.id)
        if self.ovh_state is not None:  # the fake ovhai's app processes (the fake Vast stops its own)
            from shared.fakes.ovhai import read_state

            for app in read_state(self.ovh_state)["apps"].values():
                if app.get("_pid"):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(app["_pid"], signal.SIGKILL)
        for proc in reversed(self._procs):
            _terminate(proc)
        self._procs.clear()

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(proc: _Proc) -> None:
    if proc.popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.popen.pid, signal.SIGTERM)
    try:
        proc.popen.wait(timeout=proc.grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not exit within %.0fs: killing it", proc.name, proc.grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(timeout=5)
