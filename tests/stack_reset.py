"""Reset of the session's running dev stack between tests: no box up, no queued task, an empty store.

The processes (tasks emulator, functions, Ollama stand-in) keep running; only their state goes. The
order matters, because the stack keeps working while it is reset: the scheduler is held (no reaper
pass acts on half-cleared state) and the queues are paused (no new dispatch), then the boxes stop, the
emulator is left to settle, and only then are the queues purged and the store's tables cleared.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from pathlib import Path

import grpc
from google.cloud.tasks_v2 import CloudTasksClient, Queue
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from shared.tools.devstack import DevStack

__all__ = ["StackReset"]

log = logging.getLogger("gpuq.tests.reset")

# Why the emulator must settle before a purge: it walks a copy of a queue's task list, popping each
# task while it dispatches it, and a task purged under a walk makes the walk's next lookup raise,
# which kills that queue's dispatch thread for good (tried: later tasks are never dispatched). Paused,
# no walk starts, and the one under way ends with its last dispatch. So a queue is settled when the
# emulator has no dispatch in flight and its task lists have not changed over SETTLE_S, longer than a
# walk takes between two dispatches.
SETTLE_S = 0.1
SETTLE_TIMEOUT_S = 30.0
# ESTABLISHED, SYN_SENT: a task's HTTP call under way. Not CLOSE_WAIT: the emulator drops its responses
# unclosed, so a finished call's socket can linger until its garbage is collected.
_TCP_IN_FLIGHT = ("01", "02")

Look = tuple[dict[str, list[tuple[str, int]]], bool]  # task (name, dispatch count) per queue; in flight?


class StackReset:
    """``StackReset(stack)()`` stops the stack's boxes (local provider), empties its queues and store."""

    def __init__(self, stack: DevStack) -> None:
        self.stack = stack
        # The emulator's own client, not the project's TaskQueue: listing and purging are test-only calls.
        channel = grpc.insecure_channel(stack.settings.tasks_emulator_host)
        self.tasks = CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
        self.parent = f"projects/{stack.settings.tasks_project}/locations/{stack.settings.tasks_location}"
        self.emulator_fds = Path(f"/proc/{stack.pid('tasks-emulator')}/fd")
        self.emulator_port = int(stack.settings.tasks_emulator_host.rsplit(":", 1)[1])
        self.removed: dict[str, int] = {}

    def close(self) -> None:
        self.tasks.transport.close()

    def __call__(self) -> float:
        """Reset; returns the seconds it took."""
        began = time.perf_counter()
        self.removed = {"boxes": 0, "tasks": 0, "rows": 0}
        with self.stack.scheduler_paused():
            running = self._pause_queues()
            try:
                self._stop_boxes()
                self._purge_queues()
                self._stop_boxes()  # one a dispatch in flight at the pause may have started
                self.removed["rows"] = self._clear_store()
            finally:
                for path in running:
                    self.tasks.resume_queue(name=path)
        took = time.perf_counter() - began
        log.info("stack reset in %.3fs; removed %s", took, self.removed)
        return took

    def leftovers(self) -> dict[str, int]:
        """What a reset removes, counted now: boxes up, queued tasks, store rows."""
        listing, _ = self._look()
        with contextlib.closing(self._store()) as db:
            rows = sum(db.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in _tables(db))
        return {
            "boxes": sum(1 for i in self.stack.provider().list_sync() if i.state.value != "stopped"),
            "tasks": sum(len(tasks) for tasks in listing.values()),
            "rows": rows,
        }

    # --- queues ---------------------------------------------------------------------------------
    def _pause_queues(self) -> list[str]:
        """Pause every running queue of the emulator; returns their paths (the ones to resume)."""
        running = [q.name for q in self.tasks.list_queues(parent=self.parent) if q.state == Queue.State.RUNNING]
        for path in running:
            self.tasks.pause_queue(name=path)
        return running

    def _purge_queues(self) -> None:
        """Purge every queue, settled first; again if a dispatch that was in flight queued more."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            listing = self._settled(deadline)
            if not any(listing.values()):
                return
            for path, tasks in listing.items():
                if tasks:
                    self.tasks.purge_queue(name=path)
                    self.removed["tasks"] += len(tasks)

    def _settled(self, deadline: float) -> dict[str, list[tuple[str, int]]]:
        before = self._look()
        while True:
            listing, in_flight = before
            if not in_flight and not any(listing.values()):
                return listing  # empty lists hold no task a walk has still to visit
            time.sleep(SETTLE_S)
            after = self._look()
            if not in_flight and after == before:
                return listing
            if time.monotonic() > deadline:
                raise AssertionError(f"the tasks emulator did not settle within {SETTLE_TIMEOUT_S:.0f}s: {after}")
            before = after

    def _look(self) -> Look:
        in_flight = self._emulator_dispatching()
        paths = [q.name for q in self.tasks.list_queues(parent=self.parent)]
        listing = {p: [(t.name, t.dispatch_count) for t in self.tasks.list_tasks(parent=p)] for p in paths}
        return listing, in_flight or self._emulator_dispatching()

    def _emulator_dispatching(self) -> bool:
        """Whether the emulator's process has an outgoing TCP connection open: a task's HTTP call under way."""
        sockets = set()
        for fd in self.emulator_fds.iterdir():
            with contextlib.suppress(OSError):  # an fd closed while we look
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    sockets.add(target[len("socket:[") : -1])
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if fields[9] in sockets and local_port != self.emulator_port and fields[3] in _TCP_IN_FLIGHT:
                    return True  # not its gRPC server's side (its port): a connection it opened
        return False

    # --- boxes and store ------------------------------------------------------------------------
    def _stop_boxes(self) -> None:
        provider = self.stack.provider()
        for instance in provider.list_sync():
            if instance.state.is_up() or instance.state.value == "stopping":
                provider.stop_sync(instance.id)
                self.removed["boxes"] += 1

    def _store(self) -> sqlite3.Connection:
        return sqlite3.connect(self.stack.settings.sqlite_path(), timeout=10.0)

    def _clear_store(self) -> int:
        """Delete every row of every table of the SQLite store (whatever tables its schema has now)."""
        with contextlib.closing(self._store()) as db:
            tables = _tables(db)
            with db:  # one transaction: the functions never see half of it
                return sum(db.execute(f'DELETE FROM "{name}"').rowcount for name in tables)


def _tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return [name for (name,) in rows if not name.startswith("sqlite_")]
