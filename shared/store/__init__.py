"""Job store: the source of truth for jobs, their output chunks and the instances we run."""

from shared.store.base import Chunk, IdempotencyClaim, JobStore
from shared.store.sqlite import SqliteJobStore

__all__ = ["Chunk", "IdempotencyClaim", "JobStore", "SqliteJobStore"]
