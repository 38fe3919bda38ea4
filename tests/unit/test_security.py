from __future__ import annotations

import base64

import pytest

from shared.errors import RateLimited, Unauthorized, ValidationFailed
from shared.security.callback_urls import check_callback_url
from shared.security.headers import printable
from shared.security.keys import authenticate_api_key, hash_key
from shared.security.ratelimit import RateLimiter
from shared.security.signing import (
    RequestSigner,
    derive_agent_secret,
    job_token,
    sign_task,
    verify_job_token,
    verify_task,
)
from shared.security.webhooks import sign_webhook, verify_webhook
from shared.settings import ControlPlaneSettings

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_api_keys_name_the_caller_and_refuse_others() -> None:
    keys = ControlPlaneSettings(api_keys=f"alice:k-alice,bob:sha256:{hash_key('k-bob')}").api_key_map()
    assert "k-bob" not in str(keys)
    assert authenticate_api_key({"Authorization": "Bearer k-bob"}, keys) == "bob"
    with pytest.raises(Unauthorized, match="invalid API key"):
        authenticate_api_key({"Authorization": "Bearer nope"}, keys)
    with pytest.raises(Unauthorized, match="missing API key"):
        authenticate_api_key({}, keys)


def test_signed_request_is_refused_when_replayed_tampered_or_stale() -> None:
    signer = RequestSigner("s3cret")
    headers = signer.sign("POST", "/v1/jobs", b"{}", now=1000.0)
    signer.verify("POST", "/v1/jobs", headers, b"{}", now=1001.0)
    with pytest.raises(Unauthorized, match="replayed"):
        signer.verify("POST", "/v1/jobs", headers, b"{}", now=1002.0)
    fresh = signer.sign("POST", "/v1/jobs", b"{}", now=1000.0)
    with pytest.raises(Unauthorized, match="bad signature"):
        signer.verify("POST", "/v1/jobs", fresh, b'{"x":1}', now=1001.0)
    with pytest.raises(Unauthorized, match="bad signature"):
        signer.verify("POST", "/v1/other", fresh, b"{}", now=1001.0)
    with pytest.raises(Unauthorized, match="window"):
        signer.verify("POST", "/v1/jobs", fresh, b"{}", now=1000.0 + 301)
    with pytest.raises(Unauthorized, match="bad signature"):
        RequestSigner("other").verify("POST", "/v1/jobs", signer.sign("POST", "/v1/jobs", b""), b"")


def test_job_tokens_are_scoped_to_one_job_and_attempt() -> None:
    token = job_token("k", "job_1", 2)
    assert verify_job_token("k", "job_1", token) == 2
    with pytest.raises(Unauthorized):
        verify_job_token("k", "job_2", token)
    with pytest.raises(Unauthorized):
        verify_job_token("k", "job_1", token.replace("2.", "3.", 1))


def test_task_signature_covers_the_body() -> None:
    header = sign_task("t", b'{"job_id":"a"}')
    verify_task("t", header, b'{"job_id":"a"}')
    with pytest.raises(Unauthorized):
        verify_task("t", header, b'{"job_id":"b"}')
    with pytest.raises(Unauthorized):
        verify_task("t", "", b"{}")


def test_standard_webhooks_signature_round_trip() -> None:
    headers = sign_webhook(SECRET, "msg_1", 1_700_000_000, b'{"a":1}')
    assert headers["webhook-signature"].startswith("v1,")
    verify_webhook(SECRET, headers, b'{"a":1}', now=1_700_000_010)
    with pytest.raises(Unauthorized):
        verify_webhook(SECRET, headers, b'{"a":2}', now=1_700_000_010)


def test_standard_webhooks_reference_vector() -> None:
    # The example from the Standard Webhooks specification.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = sign_webhook(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert headers["webhook-signature"] == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/x", "http://10.1.2.3/", "http://169.254.169.254/latest", "http://[::1]/", "http://192.168.0.1/"],
)
def test_callback_urls_into_private_ranges_are_refused(url: str) -> None:
    with pytest.raises(ValidationFailed):
        check_callback_url(url, set(), resolve=False)


def test_callback_allow_list_and_resolution() -> None:
    check_callback_url("http://127.0.0.1:9/x", {"127.0.0.1"}, resolve=True)
    with pytest.raises(ValidationFailed):
        check_callback_url("http://localhost:9/x", set(), resolve=True)  # resolves to loopback
    with pytest.raises(ValidationFailed):
        check_callback_url("ftp://example.com/x", set(), resolve=False)
    check_callback_url("https://hooks.example.com/x", set(), resolve=False)


def test_each_box_gets_its_own_signing_secret() -> None:
    a, b = derive_agent_secret("master", "box-a"), derive_agent_secret("master", "box-b")
    assert a != b and "master" not in a
    headers = RequestSigner(a).sign("POST", "/v1/jobs", b"{}")
    with pytest.raises(Unauthorized):
        RequestSigner(b).verify("POST", "/v1/jobs", headers, b"{}")


def test_rate_limit_refuses_then_recovers() -> None:
    now = [0.0]
    limiter = RateLimiter(60, burst=2, clock=lambda: now[0])
    limiter.check("alice")
    limiter.check("alice")
    with pytest.raises(RateLimited) as exc:
        limiter.check("alice")
    assert 0 < exc.value.retry_after_s <= 1.0
    limiter.check("bob")  # another key has its own bucket
    now[0] += 1.0
    limiter.check("alice")


def test_https_required_unless_dev_allows_http() -> None:
    with pytest.raises(ValidationFailed, match="https"):
        check_callback_url("http://hooks.example.com/x", set(), resolve=False, allow_http=False)
    check_callback_url("https://hooks.example.com/x", set(), resolve=False, allow_http=False)


def test_log_text_loses_control_characters() -> None:
    assert printable("/v1/jobs\nFAKE LOG LINE\x1b[31m") == "/v1/jobs?FAKE LOG LINE?[31m"
