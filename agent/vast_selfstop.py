"""The agent stops its own Vast.ai instance, and makes sure it did.

Inside a Vast container ``CONTAINER_ID`` is the instance's id and ``CONTAINER_API_KEY`` a key that
can show/start/stop/destroy only that instance. :meth:`VastSelfStop.stop`:

1. runs ``vastai stop instance $CONTAINER_ID`` (the official CLI, as an asyncio subprocess with a
   timeout; the key goes in through the CLI's own ``VAST_API_KEY`` variable rather than
   ``--api-key``, so it never shows in ``ps``);
2. confirms with ``GET /api/v0/instances/$CONTAINER_ID/``: the CLI exits 0 even when Vast refused
   (it prints the error and returns), so its exit code proves nothing;
3. if the CLI is missing, fails, times out or the stop is not confirmed, sends the REST call itself
   (``PUT /api/v0/instances/{id}/ {"state": "stopped"}``), retrying with backoff (the REST client
   also retries 429/5xx), and confirms each try with a GET.

Confirmed means Vast reports ``intended_status: stopped`` (STOPPING while the container is still
being stopped, then STOPPED) or the instance is gone. Every outcome is logged; the key never is.
The class also answers ``get``/``list`` for its own instance, so it can stand in for the agent's
:class:`~shared.boxes.providers.base.ComputeProvider` (``watch_idle`` only calls ``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from shared.backoff import Backoff
from shared.boxes.providers.vast import RetryPolicy, VastClient, agent_url_of, instance_state
from shared.errors import ProviderError
from shared.models import Instance, InstanceState
from shared.settings import VastSelfStopSettings

__all__ = ["VastSelfStop"]

log = logging.getLogger("gpuq.agent.vast_selfstop")

_CONFIRMED = (InstanceState.STOPPING, InstanceState.STOPPED, InstanceState.GONE)


class VastSelfStop:
    """Stops the instance the agent runs on (see the module docstring)."""

    name = "vast"

    def __init__(
        self, settings: VastSelfStopSettings, *, retry: RetryPolicy | None = None, agent_port: int = 8000
    ) -> None:
        self.settings = settings
        self._key = settings.container_api_key.get_secret_value()
        self._client = VastClient(self._key, settings.vast_url, retry=retry) if self._key else None
        self._agent_port = agent_port

    def __repr__(self) -> str:
        return f"VastSelfStop(container_id={self.settings.container_id!r}, url={self.settings.vast_url!r})"

    def _require(self) -> tuple[VastClient, int]:
        cid = self.settings.container_id.strip()
        if self._client is None or not cid.isdigit():
            raise ProviderError(
                "CONTAINER_ID / CONTAINER_API_KEY are not set: not on a Vast instance?", code="provider_not_configured"
            )
        return self._client, int(cid)

    def _instance(self, public_id: str, row: dict[str, Any] | None) -> Instance:
        state = instance_state(row)
        detail = (
            (
                f"vast {self.settings.container_id}: actual={row.get('actual_status')} "
                f"intended={row.get('intended_status')}"
            )
            if row is not None
            else "gone"
        )
        return Instance(
            id=public_id,
            provider=self.name,
            state=state,
            detail=detail,
            agent_url=agent_url_of(row, self._agent_port) if state is InstanceState.RUNNING else None,
            label=str(row.get("label")) if row and row.get("label") else None,
            price_per_hour=float(row.get("dph_total") or 0.0) if row else 0.0,
        )

    # --- the provider interface -------------------------------------------------------------------
    async def get(self, instance_id: str) -> Instance | None:
        client, cid = self._require()
        row = await client.show_instance(cid)
        return self._instance(instance_id, row) if row is not None else None

    async def start(self, instance_id: str) -> Instance:
        raise ProviderError("a box cannot start itself", code="provider_unsupported")

    async def list(self) -> list[Instance]:
        own = await self.get(self.settings.container_id)
        return [own] if own is not None else []

    async def stop(self, instance_id: str) -> Instance:
        """Stop this instance and confirm it; raises :class:`ProviderError` if it cannot be confirmed."""
        client, cid = self._require()
        if instance_id and instance_id != str(cid):
            log.debug(
                "self-stop: asked to stop %r; this box is Vast instance %s (the container key can only stop that one)",
                instance_id,
                cid,
            )
        public_id = instance_id or str(cid)
        async with client.bound():
            if await self._stop_with_cli(cid):
                confirmed = await self._confirm(client, cid)
                if confirmed is not None:
                    log.info("self-stop: stop of %s via vastai CLI confirmed (%s)", cid, confirmed.state.value)
                    return confirmed.model_copy(update={"id": public_id})
                log.warning("self-stop: the vastai CLI ran but Vast does not show %s stopping: using the REST API", cid)
            return (await self._stop_with_rest(client, cid)).model_copy(update={"id": public_id})

    # --- steps ------------------------------------------------------------------------------------
    def _cli(self) -> str | None:
        path = self.settings.cli_path
        if os.sep in path:
            return path if Path(path).is_file() and os.access(path, os.X_OK) else None
        return shutil.which(path)

    async def _stop_with_cli(self, cid: int) -> bool:
        """True if the CLI ran to exit 0 (which proves little: it exits 0 on API errors too)."""
        cli = self._cli()
        if cli is None:
            log.warning("self-stop: vastai CLI %r not found: using the REST API", self.settings.cli_path)
            return False
        env = {
            **os.environ,
            "VAST_API_KEY": self._key,
            "VAST_URL": self.settings.vast_url,
            "VASTAI_NO_UPDATE_CHECK": "1",
        }
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                cli,
                "stop",
                "instance",
                str(cid),
                "--url",
                self.settings.vast_url,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        except OSError as exc:
            log.warning("self-stop: cannot run %s (%s): using the REST API", cli, type(exc).__name__)
            return False
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout=self.settings.cli_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            log.warning(
                "self-stop: vastai CLI did not finish within %.0fs: killed; using the REST API",
                self.settings.cli_timeout_s,
            )
            return False
        text = self._redact(output.decode(errors="replace"))
        log.info(
            "self-stop: `vastai stop instance %s` exited %s in %.1fs: %s",
            cid,
            proc.returncode,
            time.monotonic() - started,
            text or "(no output)",
        )
        return proc.returncode == 0

    def _redact(self, text: str) -> str:
        lines = [line.strip() for line in text.replace(self._key, "***").splitlines() if line.strip()]
        return " | ".join(line for line in lines if "ends in" not in line)[:300]

    async def _confirm(self, client: VastClient, cid: int) -> Instance | None:
        """The instance if a GET shows it stopping/stopped/gone within ``confirm_s``, else ``None``."""
        polls = Backoff(first_s=0.5, factor=1.0, deadline_s=max(0.0, self.settings.confirm_s)).delays()
        while True:
            try:
                row = await client.show_instance(cid)
            except ProviderError as exc:
                log.warning("self-stop: confirming GET failed: %s", exc.message)
            else:
                instance = self._instance(str(cid), row)
                if instance.state in _CONFIRMED:
                    return instance
                log.info("self-stop: GET shows %s", instance.detail)
            delay = next(polls, None)
            if delay is None:
                return None
            await asyncio.sleep(delay)

    async def _stop_with_rest(self, client: VastClient, cid: int) -> Instance:
        attempts = max(1, self.settings.rest_attempts)
        delays = Backoff(first_s=max(0.0, self.settings.backoff_s), factor=2.0, max_tries=attempts).delays()
        while True:
            stopped = await self._rest_try(client, cid, delays.tries, attempts)
            if stopped is not None:
                return stopped
            delay = next(delays, None)
            if delay is None:
                raise ProviderError(
                    f"could not stop Vast instance {cid} after the CLI and {attempts} REST tries",
                    code="provider_stop_failed",
                )
            await asyncio.sleep(delay)

    async def _rest_try(self, client: VastClient, cid: int, attempt: int, attempts: int) -> Instance | None:
        """One REST stop, confirmed with a GET: the instance once confirmed, ``None`` to try again."""
        try:
            body = await client.set_state(cid, "stopped")
        except ProviderError as exc:
            log.warning("self-stop: REST stop %d/%d failed: %s", attempt, attempts, exc.message)
            return None
        if body is None:
            log.info("self-stop: Vast no longer has instance %s", cid)
            return self._instance(str(cid), None)
        if body.get("success") is False:
            log.warning(
                "self-stop: REST stop %d/%d refused: %s",
                attempt,
                attempts,
                str(body.get("msg") or body.get("error") or body)[:200],
            )
            return None
        confirmed = await self._confirm(client, cid)
        if confirmed is None:
            log.warning("self-stop: REST stop %d/%d accepted but not confirmed", attempt, attempts)
            return None
        log.info("self-stop: stop of %s via REST confirmed (%s) on try %d", cid, confirmed.state.value, attempt)
        return confirmed
