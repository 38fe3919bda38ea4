"""API keys and bearer tokens: what the jobs API, the trigger and the reaper accept.

Keys are configured as sha256 digests (or plain, hashed at start-up) and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.errors import Unauthorized
from shared.security.headers import HeaderSource

__all__ = ["authenticate_api_key", "bearer", "hash_key", "verify_bearer"]


def bearer(headers: HeaderSource) -> str:
    value = headers.get("Authorization") or headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def authenticate_api_key(headers: HeaderSource, keys: Mapping[str, str]) -> str:
    """Return the key's name, or raise :class:`Unauthorized`. ``keys`` maps sha256 hex → name;
    every entry is compared in constant time."""
    presented = bearer(headers)
    if not presented:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
    digest = hash_key(presented).encode()
    found = ""
    for key_hash, name in keys.items():
        if hmac.compare_digest(digest, key_hash.encode()):
            found = name
    if not found:
        raise Unauthorized("invalid API key", code="invalid_api_key")
    return found


def verify_bearer(headers: HeaderSource, expected: str, *, what: str) -> None:
    presented = bearer(headers)
    if not expected or not presented or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized(f"missing or invalid {what}", code="unauthorized")
