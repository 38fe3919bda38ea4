"""Logged-out sessions: a session token is valid until it expires, so logging out also records it as
revoked in the store, where every functions instance sees it (one record read per cookie request)."""

from __future__ import annotations

from shared.store.base import JobStore
from shared.ui.session import Session

__all__ = ["REVOKED_KIND", "is_revoked", "revoke"]

REVOKED_KIND = "ui_logout"


def revoke(store: JobStore, session: Session) -> None:
    store.put_record(REVOKED_KIND, session.nonce, {"expires_at": session.expires_at})


def is_revoked(store: JobStore, session: Session) -> bool:
    return store.get_record(REVOKED_KIND, session.nonce) is not None
