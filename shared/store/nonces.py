"""Replay protection shared by every functions instance: signed-request nonces kept in the store.

A signed agent request (:class:`~shared.security.signing.RequestSigner`) carries a random nonce; the
first instance that verifies it claims the nonce in the store with one atomic write, and any instance
that sees the same request again refuses it as a replay. SQLite keeps nonces in a table of its file,
Firestore in ``gpuq_nonces`` (deleted by a TTL policy on ``expire_at`` once the window has passed).
"""

from __future__ import annotations

from shared.security.signing import SIGNATURE_WINDOW_S, NonceCache
from shared.store.base import JobStore

__all__ = ["StoreNonceCache"]


class StoreNonceCache(NonceCache):
    """A :class:`NonceCache` whose memory is the store: one for the whole deployment."""

    def __init__(self, store: JobStore, window_s: float = SIGNATURE_WINDOW_S) -> None:
        super().__init__(window_s)
        self._store = store

    def check_and_add(self, nonce: str, now: float) -> bool:
        return self._store.claim_nonce(nonce, now, self._window_s)
