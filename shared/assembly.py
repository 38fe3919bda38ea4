"""Build a :class:`~shared.controlplane.ControlPlane` from settings: the store, the queue, the provider, blobs.

The one place that knows every implementation; the functions' edge calls :func:`build_control_plane` once
per process. Vendor modules are imported only for the implementation the settings choose.
"""

from __future__ import annotations

from shared.boxes.pools import ANY_MODEL, PoolConfig, Pools, load_pools
from shared.boxes.providers.base import ComputeProvider
from shared.boxes.providers.fleet import FleetProvider
from shared.controlplane import ControlPlane
from shared.security.signing import NonceCache, derive_agent_secret
from shared.settings import BlobSettings, ControlPlaneSettings, LogSettings
from shared.store.base import JobStore
from shared.store.blobs import BlobStore
from shared.store.queue import TaskQueue

__all__ = ["build_control_plane", "build_nonce_cache", "build_provider", "build_store"]


def _agent_env(settings: ControlPlaneSettings, pool: PoolConfig) -> dict[str, str]:
    """What every box of the pool's agent is told (the model server's URL aside)."""
    served = [m for m in pool.models if m != ANY_MODEL]
    return {
        "GPUQ_AGENT_PRELOAD_MODELS": ",".join(served) if served else settings.agent_preload_models,
        "GPUQ_AGENT_IDLE_GRACE_S": str(pool.idle_grace_s),
        "GPUQ_AGENT_IDLE_POLICY": pool.idle_policy,
        "GPUQ_AGENT_MAX_CONCURRENT_JOBS": str(pool.jobs_per_box),
        "GPUQ_AGENT_PULL_ON_DEMAND": str(pool.pull_on_demand).lower(),
        "GPUQ_AGENT_READY_URL": settings.public_url.rstrip("/") + "/trigger",
        "GPUQ_LOG_FORMAT": LogSettings().format,  # a box logs as the control plane does
        "GPUQ_AGENT_BACKEND": pool.backend,
        **({"GPUQ_AGENT_BACKEND_URL": pool.backend_url} if pool.backend_url else {}),
    }


def _local_server(settings: ControlPlaneSettings, pool: PoolConfig) -> dict[str, str]:
    """A local box of an openai pool talks to the local OpenAI-compatible server, unless the pool names one."""
    if pool.backend == "openai" and not pool.backend_url:
        return {"GPUQ_AGENT_BACKEND_URL": settings.openai_backend_url}
    return {}


def _pool_provider(settings: ControlPlaneSettings, pool: PoolConfig, store: JobStore | None) -> ComputeProvider:
    if pool.provider == "local":
        from shared.boxes.providers.local import LocalLaunch, LocalProvider

        launch = LocalLaunch(
            agent_master_secret=settings.agent_master_secret,
            env={
                "GPUQ_AGENT_OLLAMA_URL": settings.ollama_url,
                **_local_server(settings, pool),
                **_agent_env(settings, pool),
            },
            log_dir=settings.data_dir / "logs",
            price_per_hour=pool.price_per_hour,
        )
        return LocalProvider(settings.data_dir / "instances", launch)
    if pool.provider == "vast":
        from shared.boxes.providers.vast.pool import VastPoolProvider
        from shared.settings import VastSettings

        vast = pool.vast_settings(VastSettings())
        return VastPoolProvider(
            vast,
            pool.box_ids(),
            state_dir=vast.state_dir or settings.data_dir / "vast",
            store=store,
            agent_env=lambda box_id: {
                # Not GPUQ_AGENT_OLLAMA_URL: on a real box the on-start script sets it.
                "GPUQ_AGENT_SECRET": derive_agent_secret(settings.agent_master_secret, box_id),
                **_agent_env(settings, pool),
            },
        )
    if pool.provider == "ovh":
        from shared.boxes.providers.ovh import OvhProvider
        from shared.settings import OvhSettings

        return OvhProvider(OvhSettings())
    raise NotImplementedError(f"provider {pool.provider!r} is not available in this build")


def build_provider(
    settings: ControlPlaneSettings, pools: Pools | None = None, *, store: JobStore | None = None
) -> ComputeProvider:
    """One provider for the fleet: the pool's own when there is one pool, else one routing by box.
    With a ``store``, providers keep their coordination state there (Vast rentals), not on this host."""
    pools = pools or load_pools(settings)
    providers = {pool.name: _pool_provider(settings, pool, store) for pool in pools}
    if len(providers) == 1:
        return next(iter(providers.values()))
    return FleetProvider(pools, providers)


def build_store(settings: ControlPlaneSettings) -> JobStore:
    if settings.store == "firestore":
        from shared.store.firestore import FirestoreJobStore

        return FirestoreJobStore.connect(
            project=settings.firestore_project or None, database=settings.firestore_database
        )
    from shared.store.sqlite import SqliteJobStore

    return SqliteJobStore(settings.sqlite_path())


def build_nonce_cache(store: JobStore) -> NonceCache:
    """Where replayed signed requests are caught: in the store, so every functions instance (and every
    gunicorn worker of the dev stack) refuses a replay another one saw."""
    from shared.store.nonces import StoreNonceCache

    return StoreNonceCache(store)


def build_control_plane(settings: ControlPlaneSettings) -> ControlPlane:
    blob_settings = BlobSettings()
    store = build_store(settings)
    pools = load_pools(settings)
    return ControlPlane(
        settings=settings,
        store=store,
        nonces=build_nonce_cache(store),
        pools=pools,
        queue=TaskQueue(settings),
        provider=build_provider(settings, pools, store=store),
        blobs=BlobStore(blob_settings) if blob_settings.enabled() else None,
    )
