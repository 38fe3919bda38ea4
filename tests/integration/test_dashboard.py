"""The dashboard over real HTTP on the running stack: login and its cookie, the cookie on the jobs API's
reads, the CSRF token and Origin check on every state-changing request, logout, the static files."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from tests.servers import MODEL


@pytest.fixture
def browser(stack: DevStack) -> Iterator[httpx.Client]:
    """A cookie jar on the stack's URL, as a browser of this site would send: its own Origin on POSTs."""
    with httpx.Client(base_url=stack.url, headers={"Origin": stack.url}, timeout=30) as client:
        yield client


def _login(browser: httpx.Client, key: str) -> str:
    """Log in; returns the CSRF token the dashboard page carries."""
    answer = browser.post("/ui/login", data={"api_key": key})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    page = browser.get("/ui")
    assert page.status_code == 200
    found = re.search(r'<meta name="gpuq-csrf" content="([^"]+)">', page.text)
    assert found is not None
    return found[1]


def _queued_job(client: JobsClient) -> str:
    # 5000 tokens take 25 s on the stand-in: the test cancels it long before it could finish
    job = client.submit({"model": MODEL, "prompt": "wait for me", "options": {"num_predict": 5000}})
    return str(job["id"])


def test_a_wrong_key_gets_the_login_page_again_with_401_and_no_cookie(stack: DevStack, browser: httpx.Client) -> None:
    first = browser.get("/ui")
    assert first.status_code == 200 and 'action="/ui/login"' in first.text
    assert "script-src 'self'" in first.headers["content-security-policy"]
    answer = browser.post("/ui/login", data={"api_key": "gpuq_wrong"})
    assert answer.status_code == 401 and answer.headers["content-type"].startswith("text/html")
    assert "That API key is not valid." in answer.text and "gpuq_wrong" not in answer.text
    assert "set-cookie" not in answer.headers and not browser.cookies


def test_login_sets_an_httponly_samesite_strict_cookie_and_the_page_never_holds_the_key(
    stack: DevStack, browser: httpx.Client
) -> None:
    answer = browser.post("/ui/login", data={"api_key": stack.api_key})
    cookie = answer.headers["set-cookie"]
    attributes = [part.strip() for part in cookie.split(";")]
    assert attributes[0].startswith("gpuq_session=v1.") and stack.api_key not in cookie
    assert {"HttpOnly", "SameSite=Strict", "Path=/"} <= set(attributes) and "Secure" not in attributes  # http
    page = browser.get("/ui")
    assert page.status_code == 200 and "signed in as <b>dev</b>" in page.text
    assert stack.api_key not in page.text and browser.cookies["gpuq_session"] not in page.text
    panels = browser.get("/ui/panels").json()
    assert set(panels) == {"jobs", "fleet", "cost", "updated"}
    assert all(stack.api_key not in fragment for fragment in panels.values())
    for name in ("dashboard.js", "dashboard.css"):
        assert stack.api_key not in browser.get(f"/ui/static/{name}").text


def test_over_https_the_cookie_is_secure(stack: DevStack, browser: httpx.Client) -> None:
    """Behind the production proxy the function sees http with X-Forwarded-Proto: https."""
    answer = browser.post("/ui/login", data={"api_key": stack.api_key}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in [part.strip() for part in answer.headers["set-cookie"].split(";")]


def test_a_login_posted_from_another_site_is_refused(stack: DevStack, browser: httpx.Client) -> None:
    answer = browser.post("/ui/login", data={"api_key": stack.api_key}, headers={"Origin": "https://evil.example"})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "cross_origin"
    assert "set-cookie" not in answer.headers


def test_the_cookie_reads_the_jobs_api_but_a_cancel_without_the_csrf_token_is_refused_with_403(
    stack: DevStack, browser: httpx.Client, client: JobsClient
) -> None:
    csrf = _login(browser, stack.api_key)
    job_id = _queued_job(client)
    assert browser.get(f"/v1/jobs/{job_id}").json()["id"] == job_id  # a GET needs only the cookie
    assert browser.get("/v1/instances").status_code == 200
    refused = browser.post(f"/v1/jobs/{job_id}/cancel")
    assert refused.status_code == 403 and refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "csrf_failed" and error["type"] == "permission_error"
    assert browser.post(f"/v1/jobs/{job_id}/cancel", headers={"X-CSRF-Token": "forged"}).status_code == 403
    elsewhere = browser.post(
        f"/v1/jobs/{job_id}/cancel", headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
    )
    assert elsewhere.status_code == 403 and elsewhere.json()["error"]["code"] == "cross_origin"
    assert client.get(job_id)["status"] != "cancelled"  # nothing refused changed anything
    created = browser.post("/v1/jobs", json={"model": MODEL, "prompt": "from a forged form"})
    assert created.status_code == 403  # every state-changing route, not only the dashboard's buttons
    cancelled = browser.post(f"/v1/jobs/{job_id}/cancel", headers={"X-CSRF-Token": csrf})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_an_api_key_sent_with_the_cookie_is_what_counts(stack: DevStack, browser: httpx.Client) -> None:
    _login(browser, stack.api_key)
    answer = browser.get("/v1/instances", headers={"Authorization": "Bearer gpuq_wrong"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"


def test_logout_needs_the_token_clears_the_cookie_and_ends_the_session_everywhere(
    stack: DevStack, browser: httpx.Client
) -> None:
    csrf = _login(browser, stack.api_key)
    token = browser.cookies["gpuq_session"]
    assert browser.post("/ui/logout", data={"csrf_token": "forged"}).status_code == 403
    answer = browser.post("/ui/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/ui"
    assert "Max-Age=0" in answer.headers["set-cookie"] and "gpuq_session" not in browser.cookies
    # A copy of the old cookie (another tab, a thief) no longer works either.
    stale = {"Cookie": f"gpuq_session={token}"}
    gone = httpx.get(f"{stack.url}/ui/panels", headers=stale)
    assert gone.status_code == 401 and gone.json()["error"]["code"] == "session_ended"
    page = httpx.get(f"{stack.url}/ui", headers=stale)
    assert "logged out" in page.text and 'action="/ui/login"' in page.text and "Max-Age=0" in page.headers["set-cookie"]


def test_without_a_key_or_a_session_nothing_is_answered(stack: DevStack) -> None:
    assert httpx.get(f"{stack.url}/ui/panels").status_code == 401
    forged = httpx.get(f"{stack.url}/ui/panels", headers={"Cookie": "gpuq_session=v1.9999999999.n.k.m"})
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_session"


def test_the_static_files_are_served_with_their_types_and_revalidated(stack: DevStack) -> None:
    types = {"dashboard.js": "text/javascript", "dashboard.css": "text/css", "policies.png": "image/png"}
    for name, content_type in types.items():
        answer = httpx.get(f"{stack.url}/ui/static/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(content_type)
        again = httpx.get(f"{stack.url}/ui/static/{name}", headers={"If-None-Match": answer.headers["etag"]})
        assert again.status_code == 304
    assert httpx.get(f"{stack.url}/ui/static/nothing.js").status_code == 404
    assert httpx.get(f"{stack.url}/ui/static/..%2Fpages.py").status_code == 404
