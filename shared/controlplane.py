"""The control plane's dependencies, built once per process and passed to the core functions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from shared.boxes.providers.base import ComputeProvider
from shared.clock import Clock, SystemClock
from shared.security.signing import NonceCache, RequestSigner, derive_agent_secret
from shared.settings import ControlPlaneSettings, split_csv
from shared.store.base import JobStore
from shared.store.blobs import BlobSettings, BlobStore
from shared.store.queue import TaskQueue

__all__ = ["ControlPlane", "build_control_plane", "build_provider", "build_store"]

T = TypeVar("T")
log = logging.getLogger("gpuq")


@dataclass
class ControlPlane:
    settings: ControlPlaneSettings
    store: JobStore
    queue: TaskQueue
    provider: ComputeProvider
    clock: Clock = field(default_factory=SystemClock)
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10.0, follow_redirects=False))
    nonces: NonceCache = field(default_factory=NonceCache)
    blobs: BlobStore | None = None  # large finished outputs go to a bucket when configured

    def agent_signer(self, instance_id: str) -> RequestSigner:
        """Signs and verifies the traffic of one box, with that box's own secret."""
        return RequestSigner(derive_agent_secret(self.settings.agent_master_secret, instance_id), nonces=self.nonces)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one provider call from sync code (functions are sync; providers are async)."""
        return asyncio.run(coro)

    def allow_hosts(self) -> set[str]:
        return {h.lower() for h in split_csv(self.settings.callback_allow_hosts)}


def build_provider(settings: ControlPlaneSettings) -> ComputeProvider:
    if settings.provider == "local":
        from shared.boxes.providers.local import LocalLaunch, LocalProvider

        launch = LocalLaunch(
            agent_master_secret=settings.agent_master_secret,
            env={
                "GPUQ_AGENT_OLLAMA_URL": settings.ollama_url,
                "GPUQ_AGENT_PRELOAD_MODELS": settings.agent_preload_models,
                "GPUQ_AGENT_IDLE_GRACE_S": str(settings.agent_idle_grace_s),
                "GPUQ_AGENT_IDLE_POLICY": settings.agent_idle_policy,
                "GPUQ_AGENT_READY_URL": settings.public_url.rstrip("/") + "/trigger",
            },
            log_dir=settings.data_dir / "logs",
            price_per_hour=settings.local_price_per_hour,
        )
        return LocalProvider(settings.data_dir / "instances", launch)
    if settings.provider == "vast":
        from shared.boxes.providers.vast import build_vast_provider
        from shared.settings import VastSettings

        vast = VastSettings()
        return build_vast_provider(
            vast,
            logical_id=settings.instance_id,
            state_dir=vast.state_dir or settings.data_dir / "vast",
            agent_env={
                # Not GPUQ_AGENT_OLLAMA_URL: on a real box the on-start script sets it.
                "GPUQ_AGENT_SECRET": derive_agent_secret(settings.agent_master_secret, settings.instance_id),
                "GPUQ_AGENT_PRELOAD_MODELS": settings.agent_preload_models,
                "GPUQ_AGENT_IDLE_POLICY": settings.agent_idle_policy,
                "GPUQ_AGENT_IDLE_GRACE_S": str(settings.agent_idle_grace_s),
                "GPUQ_AGENT_READY_URL": settings.public_url.rstrip("/") + "/trigger",
            },
        )
    if settings.provider == "ovh":
        from shared.boxes.providers.ovh import OvhProvider, OvhSettings

        return OvhProvider(OvhSettings())
    raise NotImplementedError(f"provider {settings.provider!r} is not available in this build")


def build_store(settings: ControlPlaneSettings) -> JobStore:
    if settings.store == "firestore":
        from shared.store.firestore import FirestoreJobStore

        return FirestoreJobStore.connect(
            project=settings.firestore_project or None, database=settings.firestore_database
        )
    from shared.store.sqlite import SqliteJobStore

    return SqliteJobStore(settings.sqlite_path())


def build_nonce_cache(store: JobStore) -> NonceCache:
    """Where replayed signed requests are caught. With the SQLite store, in its file: every process that
    shares it (the dev stack's gunicorn workers) refuses a replay another one saw. Otherwise per process."""
    from shared.store.sqlite import SqliteJobStore, SqliteNonceCache

    return SqliteNonceCache(store) if isinstance(store, SqliteJobStore) else NonceCache()


def build_control_plane(settings: ControlPlaneSettings) -> ControlPlane:
    blob_settings = BlobSettings()
    store = build_store(settings)
    return ControlPlane(
        settings=settings,
        store=store,
        nonces=build_nonce_cache(store),
        queue=TaskQueue(settings),
        provider=build_provider(settings),
        blobs=BlobStore(blob_settings) if blob_settings.enabled() else None,
    )
