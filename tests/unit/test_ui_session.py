"""The dashboard's session tokens and CSRF checks, without HTTP: who a cookie stands for, when it stops
standing for anyone, and which state-changing requests are refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import Forbidden, ServiceError, Unauthorized
from shared.security.keys import hash_key
from shared.ui.session import (
    BrowserRequest,
    Session,
    authenticate_browser,
    check_origin,
    clear_cookie,
    open_session,
    read_session,
    session_cookie,
)

SECRET = "job-token-secret"
KEY = "gpuq_test_key_1"
KEYS = {hash_key(KEY): "alice", hash_key("gpuq_other"): "bob"}
NOW = 1_700_000_000.0
HOSTS = {"127.0.0.1:8080"}


def _open(key: str = KEY, lifetime_s: float = 3600.0) -> Session:
    return open_session(SECRET, KEYS, key, now=NOW, lifetime_s=lifetime_s)


def _post(session: Session, **changes: Any) -> BrowserRequest:
    request = BrowserRequest("POST", session.token, csrf=session.csrf, origin="http://127.0.0.1:8080")
    return dataclasses.replace(request, **changes)


def test_a_login_opens_a_session_that_any_instance_reads_back() -> None:
    session = _open()
    assert session.name == "alice" and session.expires_at == int(NOW + 3600)
    again = read_session(SECRET, KEYS, session.token, now=NOW + 10)
    assert again == session
    assert KEY not in session.token and hash_key(KEY) not in session.token  # neither the key nor its hash


def test_a_wrong_key_opens_nothing() -> None:
    with pytest.raises(Unauthorized) as raised:
        _open("not-a-key")
    assert raised.value.code == "invalid_api_key"


def test_each_login_is_its_own_session_with_its_own_csrf_token() -> None:
    one, two = _open(), _open()
    assert one.token != two.token and one.csrf != two.csrf and one.nonce != two.nonce


def test_a_session_ends_when_it_expires() -> None:
    session = _open(lifetime_s=60)
    read_session(SECRET, KEYS, session.token, now=NOW + 59)
    with pytest.raises(Unauthorized) as raised:
        read_session(SECRET, KEYS, session.token, now=NOW + 60)
    assert raised.value.code == "session_expired"


@pytest.mark.parametrize(
    "keys",
    [
        {hash_key("gpuq_other"): "bob"},  # the key was removed from GPUQ_API_KEYS
        {hash_key("gpuq_rotated"): "alice", hash_key("gpuq_other"): "bob"},  # rotated under the same name
    ],
    ids=["revoked", "rotated"],
)
def test_a_session_ends_with_its_key(keys: dict[str, str]) -> None:
    with pytest.raises(Unauthorized) as raised:
        read_session(SECRET, keys, _open().token, now=NOW)
    assert raised.value.code == "invalid_session"


def test_a_session_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(Unauthorized):
        read_session("another-secret", KEYS, _open().token, now=NOW)


def test_a_longer_lifetime_cannot_be_written_into_the_token() -> None:
    version, expires, nonce, key_id, mac = _open().token.split(".")
    forged = ".".join((version, str(int(expires) + 86400), nonce, key_id, mac))
    with pytest.raises(Unauthorized) as raised:
        read_session(SECRET, KEYS, forged, now=NOW)
    assert raised.value.code == "invalid_session"


@given(st.text(max_size=400))
def test_any_cookie_value_is_a_session_or_a_401(token: str) -> None:
    with pytest.raises(Unauthorized):
        read_session(SECRET, KEYS, token, now=NOW)


@pytest.mark.parametrize("token", ["", "v1", "v1.²³.n.k.m", "v1.1.2.3.4.5", "v2.9999999999.n.k.m", "v1.1.n.k.ü"])
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        read_session(SECRET, KEYS, token, now=NOW)


def test_without_a_signing_secret_the_dashboard_refuses_to_log_anyone_in() -> None:
    with pytest.raises(ServiceError) as raised:
        open_session("", KEYS, KEY, now=NOW, lifetime_s=60)
    assert raised.value.code == "ui_not_configured" and raised.value.status == 503


def test_reads_need_no_csrf_token() -> None:
    session = _open()
    for method in ("GET", "HEAD", "OPTIONS"):
        found = authenticate_browser(SECRET, KEYS, BrowserRequest(method, session.token), now=NOW, hosts=HOSTS)
        assert found.name == "alice"


def test_a_post_with_the_sessions_token_from_this_site_passes() -> None:
    session = _open()
    assert authenticate_browser(SECRET, KEYS, _post(session), now=NOW, hosts=HOSTS).name == "alice"
    no_origin = _post(session, origin=None, fetch_site="same-origin")
    assert authenticate_browser(SECRET, KEYS, no_origin, now=NOW, hosts=HOSTS).name == "alice"


@pytest.mark.parametrize("csrf", [None, "", "wrong", "ü"])
def test_a_post_without_the_sessions_csrf_token_is_forbidden(csrf: str | None) -> None:
    with pytest.raises(Forbidden) as raised:
        authenticate_browser(SECRET, KEYS, _post(_open(), csrf=csrf), now=NOW, hosts=HOSTS)
    assert raised.value.code == "csrf_failed" and raised.value.status == 403


def test_another_sessions_csrf_token_does_not_pass() -> None:
    request = _post(_open(), csrf=_open().csrf)
    with pytest.raises(Forbidden):
        authenticate_browser(SECRET, KEYS, request, now=NOW, hosts=HOSTS)


@pytest.mark.parametrize(
    ("origin", "fetch_site"),
    [
        ("https://evil.example", None),
        ("http://127.0.0.1:9999", None),  # another port is another origin
        ("null", None),
        (None, "cross-site"),
        (None, "same-site"),  # a sibling subdomain: what SameSite alone lets through
    ],
)
def test_a_post_from_another_site_is_forbidden_even_with_the_token(origin: str | None, fetch_site: str | None) -> None:
    request = _post(_open(), origin=origin, fetch_site=fetch_site)
    with pytest.raises(Forbidden) as raised:
        authenticate_browser(SECRET, KEYS, request, now=NOW, hosts=HOSTS)
    assert raised.value.code == "cross_origin"


def test_the_public_urls_host_counts_as_this_site() -> None:
    check_origin("https://gpuq.example.com", None, {"10.0.0.5:8080", "gpuq.example.com"})


def test_the_cookie_is_httponly_samesite_strict_for_the_whole_site_and_secure_over_https() -> None:
    session = _open(lifetime_s=7200)
    plain = session_cookie(session, secure=False, now=NOW)
    attributes = {part.strip().split("=")[0] for part in plain.split(";")}
    assert plain.startswith(f"gpuq_session={session.token};")
    assert {"HttpOnly", "Path", "Max-Age", "SameSite"} <= attributes and "Secure" not in attributes
    assert "SameSite=Strict" in plain and "Path=/;" in plain + ";" and "Max-Age=7200" in plain
    assert "Secure" in session_cookie(session, secure=True, now=NOW)


def test_logging_out_expires_the_cookie_with_the_same_attributes() -> None:
    cleared = clear_cookie(secure=True)
    assert cleared.startswith("gpuq_session=;") and "Max-Age=0" in cleared
    assert all(a in cleared for a in ("HttpOnly", "SameSite=Strict", "Path=/", "Secure"))
