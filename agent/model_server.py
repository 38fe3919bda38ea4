"""The supervised model server: the agent starts it (``GPUQ_AGENT_SERVER_COMMAND``), reads what it prints,
knows when it is up, restarts it when it crashes, and gives up when it cannot come up.

One server process at a time, in a process group of its own (so a crash's or a stop's leftovers, such as
Ollama's runners or vLLM's workers holding GPU memory, go with it). Its output (stdout and stderr, one
pipe) is read in the event loop as it comes and matched line by line (:mod:`agent.server_log`):

- while it starts, a line matching ``on_error`` means it cannot come up: it is stopped and the box is
  failed at once (no restart: a full GPU or a bad model stays so); ``on_info`` lines become the reason
  (``Downloading model.safetensors 43%``) and the phase ``loading_model``;
- it is up once an ``on_load`` line came and its API answers (``probe``), or, with no ``on_load``
  pattern, once its API answers (polled every 0.1 s to 1 s); not up within ``ready_timeout_s``: failed;
- once up, the patterns are not acted on: a line that merely mentions an error (a prompt echoed in a
  request log) never takes the box down, the process exiting does;
- a process that exits is restarted after a backoff (``restart_backoff_s``, doubling, at most 60 s),
  at most ``max_restarts`` times in a row; a server that stayed up for ``STABLE_S`` has its count reset.
  Past the last restart the box is failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum

from agent.server_log import LineKind, LineSplitter, LogPatterns, StartupTail, clean_line
from shared.backoff import Backoff
from shared.settings import AgentSettings

__all__ = ["ModelServer", "ServerConfig", "ServerPhase", "exit_text"]

log = logging.getLogger("gpuq.agent.server")
server_output = logging.getLogger("gpuq.agent.server.output")

STABLE_S = 300.0
"""A server up this long has its restart count reset: a crash a day never exhausts ``max_restarts``."""
RESTART_CAP_S = 60.0
TAIL_LINES = 40
READ_CHUNK = 65536
CONFIRM_S = 30.0  # after the on_load line, how long the API may take to answer
EXIT_DRAIN_S = 2.0  # after the process exits, how long its last output may take to arrive


def exit_text(code: int | None) -> str:
    """``exited with code 1``, ``was killed by SIGKILL``."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class ServerPhase(StrEnum):
    STARTING = "starting_server"
    LOADING = "loading_model"
    UP = "up"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ServerConfig:
    """How to run and judge the server (from :class:`~shared.settings.AgentSettings` by :meth:`from_settings`)."""

    argv: tuple[str, ...]
    patterns: LogPatterns = field(default_factory=LogPatterns)
    max_restarts: int = 3
    restart_backoff_s: float = 1.0
    ready_timeout_s: float = 900.0
    stop_grace_s: float = 5.0
    env: dict[str, str] | None = None  # None: the agent's own environment less its GPUQ_* settings

    @classmethod
    def from_settings(cls, settings: AgentSettings) -> ServerConfig | None:
        """The supervised server's configuration; ``None`` when none is configured."""
        argv = tuple(shlex.split(settings.server_command))
        if not argv:
            return None
        return cls(
            argv=argv,
            patterns=LogPatterns.parse(settings.server_on_load, settings.server_on_error, settings.server_on_info),
            max_restarts=settings.server_max_restarts,
            restart_backoff_s=settings.server_restart_backoff_s,
            ready_timeout_s=settings.server_ready_timeout_s,
        )

    def backoff(self) -> Backoff:
        return Backoff(first_s=self.restart_backoff_s, cap_s=RESTART_CAP_S, max_tries=self.max_restarts + 1)

    def child_env(self) -> dict[str, str]:
        if self.env is not None:
            return dict(self.env)
        # The server needs none of the agent's settings, and the agent's secret must not reach it.
        return {k: v for k, v in os.environ.items() if not k.startswith("GPUQ_")}


@dataclass
class _Life:
    """One server process, from its start to its exit."""

    proc: asyncio.subprocess.Process
    started: float = field(default_factory=time.monotonic)
    loaded: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: asyncio.Event = field(default_factory=asyncio.Event)
    error_line: str = ""
    up_at: float | None = None


class ModelServer:
    """Start it with :meth:`run` (a task that ends when the server has failed or :meth:`stop` was called);
    wait for it with :meth:`wait_up` / :meth:`wait_down`. ``probe`` asks the server's API (raises or
    returns False while it is not up); ``on_change(phase, reason)`` hears every change."""

    def __init__(
        self,
        config: ServerConfig,
        probe: Callable[[], Awaitable[object]],
        on_change: Callable[[ServerPhase, str], None] | None = None,
    ) -> None:
        self.config = config
        self._probe = probe
        self._on_change = on_change
        self.phase = ServerPhase.STARTING
        self.reason = "starting the model server"
        self.restarts = 0
        self.pid: int | None = None
        self.last_exit: int | None = None
        self.tail = StartupTail(TAIL_LINES)
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._life: _Life | None = None

    # --- what the agent asks -----------------------------------------------------------------------
    async def wait_up(self) -> bool:
        """True once the server is up; False if it failed or was stopped first."""
        await self._wait(lambda: self.phase in (ServerPhase.UP, ServerPhase.FAILED, ServerPhase.STOPPED))
        return self.phase is ServerPhase.UP

    async def wait_down(self) -> None:
        """Until the server is no longer up (it exited, failed, or was stopped)."""
        await self._wait(lambda: self.phase is not ServerPhase.UP)

    def describe(self) -> dict[str, object]:
        """For ``/health``: the process, its restarts, and (until it is up) its start-up output."""
        out: dict[str, object] = {"pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit}
        if self.phase is not ServerPhase.UP:
            out["tail"] = self.tail.lines()[-20:]
        return out

    async def stop(self) -> None:
        """Stop the server (its whole process group) and the supervision."""
        self._stopping.set()
        if self._life is not None:
            await self._terminate(self._life.proc)

    # --- supervision -------------------------------------------------------------------------------
    async def run(self) -> None:
        delays = self.config.backoff().delays()
        while not self._stopping.is_set():
            fatal = await self._one_life()
            if self._stopping.is_set():
                break
            if fatal is not None:
                self._set(ServerPhase.FAILED, fatal)
                return
            life = self._life
            if life is not None and life.up_at is not None and time.monotonic() - life.up_at >= STABLE_S:
                delays = self.config.backoff().delays()  # it ran well for a while: a fresh count
            exit_reason = f"the model server {exit_text(self.last_exit)}"
            delay = next(delays, None)
            if delay is None:
                self._set(ServerPhase.FAILED, f"{exit_reason}; gave up after {self.restarts} restart(s)")
                return
            self.restarts += 1
            self._set(
                ServerPhase.STARTING,
                f"{exit_reason}; restart {self.restarts} of {self.config.max_restarts} in {delay:.1f}s",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)
        self._set(ServerPhase.STOPPED, "stopped")

    async def _one_life(self) -> str | None:
        """Run one server process until it exits; the reason it can never come up, or None (restart it)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.config.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                env=self.config.child_env(),
            )
        except OSError as exc:
            return f"cannot start {self.config.argv[0]!r}: {exc.strerror or exc}"
        life = self._life = _Life(proc)
        self.pid = proc.pid
        self.tail.restart()
        self._set(ServerPhase.STARTING, f"model server started (pid {proc.pid})")
        log.info("model server started: pid %d: %s", proc.pid, shlex.join(self.config.argv))
        pump = asyncio.create_task(self._pump(life))
        try:
            fatal = await self._until_up(life, pump)
            if fatal is None and life.up_at is not None:
                await proc.wait()
                if not self._stopping.is_set():  # a crash: the box is no longer ready (a stop says so itself)
                    self._set(ServerPhase.STARTING, f"the model server {exit_text(proc.returncode)}")
        finally:
            await self._terminate(proc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), timeout=EXIT_DRAIN_S)
            pump.cancel()
        self.last_exit = proc.returncode
        level = logging.INFO if self._stopping.is_set() else logging.WARNING
        log.log(level, "model server pid %d %s", proc.pid, exit_text(proc.returncode))
        return fatal or (life.error_line if life.fatal.is_set() and life.up_at is None else None)

    async def _until_up(self, life: _Life, pump: asyncio.Task[None]) -> str | None:
        """Wait for the server to come up; the fatal reason if it cannot, None once up or if it exited."""
        readiness = asyncio.create_task(self._readiness(life))
        exited = asyncio.create_task(life.proc.wait())
        fatal = asyncio.create_task(life.fatal.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        waiters = {readiness, exited, fatal, stopping}
        try:
            done, _ = await asyncio.wait(
                waiters, timeout=self.config.ready_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in waiters:
                task.cancel()
        if not done:
            return f"not up within server_ready_timeout_s={self.config.ready_timeout_s:g}s"
        if fatal in done or (exited in done and life.fatal.is_set()):
            return life.error_line
        if readiness in done and not readiness.cancelled() and readiness.exception() is None:
            life.up_at = time.monotonic()
            self.tail.recording = False
            self._set(ServerPhase.UP, "model server up")
            log.info("model server up %.2fs after its start", life.up_at - life.started)
        return None

    async def _readiness(self, life: _Life) -> None:
        """Returns once the server is up: its on_load line came (if it has patterns) and its API answers."""
        if self.config.patterns.on_load:
            await life.loaded.wait()
            deadline = time.monotonic() + CONFIRM_S
        else:
            deadline = None
        delay = 0.1
        while not await self._answers():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("on_load seen but the API does not answer")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _answers(self) -> bool:
        try:
            return await self._probe() is not False
        except Exception:  # any failure of the probe is "not up yet"
            return False

    async def _pump(self, life: _Life) -> None:
        """Read the server's output until it ends; act on each line."""
        assert life.proc.stdout is not None
        splitter = LineSplitter()
        while chunk := await life.proc.stdout.read(READ_CHUNK):
            for line in splitter.feed(chunk):
                self._line(life, line)
        for line in splitter.close():
            self._line(life, line)

    def _line(self, life: _Life, line: str) -> None:
        server_output.info("%s", line)
        if life.up_at is not None:
            return  # serving: patterns are not acted on (see the module's docstring)
        self.tail.add(line)
        kind = self.config.patterns.classify(line)
        if kind is LineKind.ERROR and not life.fatal.is_set():
            life.error_line = clean_line(line)
            life.fatal.set()
        elif kind is LineKind.LOAD:
            life.loaded.set()
        elif kind is LineKind.INFO:
            self._set(ServerPhase.LOADING, clean_line(line))

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM to the server's process group, SIGKILL after the grace; also after an exit (leftovers)."""
        if proc.returncode is None:
            self._signal(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=self.config.stop_grace_s)
            except TimeoutError:
                log.warning("model server pid %d ignored SIGTERM: killing it", proc.pid)
        self._signal(proc.pid, signal.SIGKILL)
        await proc.wait()

    @staticmethod
    def _signal(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)

    # --- state -----------------------------------------------------------------------------------
    def _set(self, phase: ServerPhase, reason: str) -> None:
        if (phase, reason) == (self.phase, self.reason):
            return
        self.phase, self.reason = phase, reason
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        if self._on_change is not None:
            self._on_change(phase, reason)

    async def _wait(self, done: Callable[[], bool]) -> None:
        while not done():
            await self._changed.wait()
