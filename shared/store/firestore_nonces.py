"""Signed-request nonces in Firestore: ``gpuq_nonces/{nonce}`` with ``seen_at`` and ``expire_at``.

``create`` fails if the document exists, so one commit decides whichever functions instance asks first. A
TTL policy on ``expire_at`` (``gpuq deploy`` sets it) deletes them once the signature window has passed;
TTL deletion is lazy, so a nonce older than the window counts as unseen.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from google.cloud.firestore import Client

__all__ = ["NONCES", "claim_nonce"]

NONCES = "gpuq_nonces"


def claim_nonce(
    client: Client, timeout_s: float, retrying: dict[str, Any], nonce: str, now: float, window_s: float
) -> bool:
    """True if ``nonce`` was not seen within ``window_s`` (and is now remembered); False for a replay."""
    from google.api_core import exceptions as gexc

    ref = client.collection(NONCES).document(quote(nonce, safe=""))
    fields = {"seen_at": now, "expire_at": datetime.datetime.fromtimestamp(now + window_s, tz=datetime.UTC)}
    try:
        ref.create(fields, retry=None, timeout=timeout_s)
        return True
    except gexc.AlreadyExists:
        pass
    snapshot = ref.get(**retrying)
    if not snapshot.exists or float(snapshot.get("seen_at")) >= now - window_s:
        return False
    batch = client.batch()
    batch.update(ref, fields, option=client.write_option(last_update_time=snapshot.update_time))
    try:
        batch.commit(retry=None, timeout=timeout_s)
    except (gexc.FailedPrecondition, gexc.NotFound):
        return False
    return True
