"""Build a :class:`~shared.controlplane.ControlPlane` from settings: the store, the queue, the provider, blobs.

The one place that knows every implementation; the functions' edge calls :func:`build_control_plane` once
per process. Vendor modules are imported only for the implementation the settings choose.
"""

from __future__ import annotations

from shared.boxes.providers.base import ComputeProvider
from shared.controlplane import ControlPlane
from shared.security.signing import NonceCache, derive_agent_secret
from shared.settings import BlobSettings, ControlPlaneSettings
from shared.store.base import JobStore
from shared.store.blobs import BlobStore
from shared.store.queue import TaskQueue

__all__ = ["build_control_plane", "build_nonce_cache", "build_provider", "build_store"]


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
        from shared.boxes.providers.ovh import OvhProvider
        from shared.settings import OvhSettings

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
