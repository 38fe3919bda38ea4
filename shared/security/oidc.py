"""Verify the OIDC tokens Google attaches to Cloud Tasks and Cloud Scheduler requests (production).

The token must be signed by Google (certificates from ``oidc_certs_url``), be for our URL
(audience), unexpired, and name the expected service account with a verified email.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import google.auth.transport.requests

from shared.errors import Unauthorized
from shared.security.headers import HeaderSource
from shared.security.keys import bearer

__all__ = ["verify_oidc"]


@functools.cache
def _transport() -> google.auth.transport.requests.Request:
    import google.auth.transport.requests
    import requests

    return google.auth.transport.requests.Request(session=requests.Session())


_CHECKS = (
    ("audience", "wrong audience"),
    ("expired", "expired"),
    ("too early", "not yet valid"),
    ("signature", "bad signature"),
    ("segments", "malformed"),
    ("certificate", "unknown signing key"),
)


def _which_check(message: str) -> str:
    lowered = message.lower()
    return next((label for needle, label in _CHECKS if needle in lowered), "could not be verified")


def verify_oidc(headers: HeaderSource, *, audience: str, service_account: str, certs_url: str) -> None:
    token = bearer(headers)
    if not token:
        raise Unauthorized("missing OIDC token", code="missing_oidc_token")
    from google.auth import exceptions as gexc
    from google.oauth2 import id_token

    try:
        claims = id_token.verify_token(
            token, _transport(), audience=audience, certs_url=certs_url, clock_skew_in_seconds=10
        )
    except (ValueError, gexc.GoogleAuthError) as exc:
        # google-auth's messages can quote the token itself: say only which check failed.
        raise Unauthorized(f"invalid OIDC token: {_which_check(str(exc))}", code="invalid_oidc_token") from None
    if claims.get("email") != service_account or not claims.get("email_verified", False):
        raise Unauthorized("OIDC token is not from the expected service account", code="invalid_oidc_token")
