"""Signed-request nonces kept in the store: every functions instance sharing it refuses a replay.

Runs on both backends (SQLite's file, the Firestore emulator). Each "instance" opens its own store
connection, as separate functions processes do.
"""

from __future__ import annotations

import pytest

from shared.errors import Unauthorized
from shared.security.signing import RequestSigner
from shared.store.nonces import StoreNonceCache
from tests.contract.conftest import Backend

BODY = b'{"instance_id": "local-1"}'


def test_a_nonce_seen_through_one_connection_is_a_replay_through_another(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    try:
        assert StoreNonceCache(first).check_and_add("n-1", now=1000.0)
        assert not StoreNonceCache(second).check_and_add("n-1", now=1001.0)
        assert StoreNonceCache(second).check_and_add("n-2", now=1001.0)
    finally:
        first.close()
        second.close()


def test_a_nonce_is_forgotten_after_its_window(backend: Backend) -> None:
    store = backend.open()
    nonces = StoreNonceCache(store, window_s=300.0)
    try:
        assert nonces.check_and_add("n-1", now=1000.0)
        assert not nonces.check_and_add("n-1", now=1300.0)
        assert nonces.check_and_add("n-1", now=1300.1)  # the signature's own timestamp check refuses it by then
    finally:
        store.close()


def test_a_signed_request_verifies_once_across_instances(backend: Backend) -> None:
    first, second = backend.open(), backend.open()
    headers = RequestSigner("box-secret").sign("POST", "/trigger", BODY)
    try:
        RequestSigner("box-secret", nonces=StoreNonceCache(first)).verify("POST", "/trigger", headers, BODY)
        replay = RequestSigner("box-secret", nonces=StoreNonceCache(second))
        with pytest.raises(Unauthorized) as refused:
            replay.verify("POST", "/trigger", headers, BODY)
        assert refused.value.code == "replayed_request"
    finally:
        first.close()
        second.close()
