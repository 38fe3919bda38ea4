"""Signed-request nonces kept in the SQLite store: every process sharing the file refuses a replay."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import Unauthorized
from shared.security.signing import RequestSigner
from shared.store import SqliteJobStore
from shared.store.sqlite import SqliteNonceCache

BODY = b'{"instance_id": "local-1"}'


def test_a_nonce_seen_through_one_connection_is_a_replay_through_another(tmp_path: Path) -> None:
    # Two stores on one file: what two gunicorn workers each open.
    first, second = SqliteJobStore(tmp_path / "gpuq.db"), SqliteJobStore(tmp_path / "gpuq.db")
    try:
        assert SqliteNonceCache(first).check_and_add("n-1", now=1000.0)
        assert not SqliteNonceCache(second).check_and_add("n-1", now=1001.0)
        assert SqliteNonceCache(second).check_and_add("n-2", now=1001.0)
    finally:
        first.close()
        second.close()


def test_a_nonce_is_forgotten_after_its_window(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "gpuq.db")
    nonces = SqliteNonceCache(store, window_s=300.0)
    try:
        assert nonces.check_and_add("n-1", now=1000.0)
        assert not nonces.check_and_add("n-1", now=1300.0)
        assert nonces.check_and_add("n-1", now=1300.1)  # the signature's own timestamp check refuses it by then
    finally:
        store.close()


def test_a_signed_request_verifies_once_across_workers(tmp_path: Path) -> None:
    first, second = SqliteJobStore(tmp_path / "gpuq.db"), SqliteJobStore(tmp_path / "gpuq.db")
    headers = RequestSigner("box-secret").sign("POST", "/trigger", BODY)
    try:
        RequestSigner("box-secret", nonces=SqliteNonceCache(first)).verify("POST", "/trigger", headers, BODY)
        replay = RequestSigner("box-secret", nonces=SqliteNonceCache(second))
        with pytest.raises(Unauthorized) as refused:
            replay.verify("POST", "/trigger", headers, BODY)
        assert refused.value.code == "replayed_request"
    finally:
        first.close()
        second.close()
