"""The dashboard in a real browser: headless Chromium (Debian's, `make tools`) driven by Playwright, against
the running dev stack. A person logs in, watches a job stream to completion, sees the box start and stop,
cancels a job and logs out.

Screenshots are written on every run: into docs/ (the ones docs/dashboard.md shows) with
``GPUQ_UPDATE_SCREENSHOTS=1``, else into the test's temporary folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Playwright, expect, sync_playwright

from shared.tools.client import JobsClient
from shared.tools.devstack import DevStack
from tests.required_tools import require_tool
from tests.servers import MODEL

DOCS = Path(__file__).resolve().parents[2] / "docs"
# Read at import: the autouse clean_environ fixture removes GPUQ_* variables before each test runs.
UPDATE_SCREENSHOTS = os.environ.get("GPUQ_UPDATE_SCREENSHOTS") == "1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BOX = "#fleet tr[data-box='local-1']"
WAIT_MS = 60_000  # generous upper bounds: each expectation returns as soon as the page shows it


@pytest.fixture(scope="module")
def playwright() -> Iterator[tuple[Playwright, str]]:
    chromium = require_tool("chromium", "tools")
    with sync_playwright() as driver:
        yield driver, chromium


@pytest.fixture
def page(playwright: tuple[Playwright, str], tmp_path: Path) -> Iterator[Page]:
    """A fresh browser profile per test (no cookie of another test), the window of a laptop."""
    driver, chromium = playwright
    context = driver.chromium.launch_persistent_context(
        str(tmp_path / "profile"),
        executable_path=chromium,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1360, "height": 1000},
    )
    context.set_default_timeout(WAIT_MS)
    expect.set_options(timeout=WAIT_MS)
    tab = context.pages[0] if context.pages else context.new_page()
    yield tab
    context.close()


def _screenshot(page: Page, name: str, tmp_path: Path) -> Path:
    path = (DOCS if UPDATE_SCREENSHOTS else tmp_path) / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _log_in(page: Page, stack: DevStack, key: str) -> int:
    page.goto(f"{stack.url}/ui")
    page.fill("#api_key", key)
    with page.expect_response(lambda r: r.url.endswith("/ui/login")) as answer:
        page.click("form.login-form button[type=submit]")
    return answer.value.status


def test_a_person_logs_in_watches_a_job_stream_sees_the_box_start_and_stop_and_cancels_a_job(
    stack: DevStack, client: JobsClient, page: Page, tmp_path: Path
) -> None:
    began = time.monotonic()
    assert _log_in(page, stack, "gpuq_not_a_key") == 401
    expect(page.locator("p.error")).to_have_text("That API key is not valid.")
    _screenshot(page, "dashboard-login.png", tmp_path)

    assert _log_in(page, stack, stack.api_key) == 303
    expect(page.locator("header .who")).to_have_text("signed in as dev")
    cookie = next(c for c in page.context.cookies() if c["name"] == "gpuq_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert stack.api_key not in page.content() and stack.api_key not in page.url
    expect(page.locator(BOX)).to_have_attribute("data-state", "stopped")

    # A job submitted through the API appears, and its output streams into the page while it runs.
    job = client.submit({"model": MODEL, "prompt": "Why is the sky blue?", "options": {"num_predict": 1000}})
    row = page.locator(f"tr.job[data-job='{job['id']}']")
    row.locator("button[data-action=watch]").click()
    expect(page.locator(BOX)).to_have_attribute("data-state", "ready")  # the box started for it
    page.wait_for_function(
        "document.getElementById('output-status').dataset.status === 'running'"
        " && document.getElementById('output').textContent.length > 0"
    )
    expect(page.locator("#output-status")).to_have_attribute("data-status", "succeeded")
    assert page.locator("#output").text_content() == client.get(job["id"])["output"]
    expect(row).to_have_attribute("data-status", "succeeded")

    # A second, long job runs on the warm box; the dashboard cancels it.
    long_job = client.submit({"model": MODEL, "prompt": "Tell me everything.", "options": {"num_predict": 20000}})
    long_row = page.locator(f"tr.job[data-job='{long_job['id']}']")
    expect(long_row).to_have_attribute("data-status", "running")
    expect(page.locator(f"{BOX} td").nth(3)).to_have_text("1 / 4")  # its running jobs
    _screenshot(page, "dashboard.png", tmp_path)
    long_row.locator("button[data-action=cancel]").click()
    expect(page.locator("#flash")).to_have_text(f"Cancelled {long_job['id']}.")
    expect(long_row).to_have_attribute("data-status", "cancelled")
    assert client.get(long_job["id"])["status"] == "cancelled"

    # Idle past its grace, the box stops itself, and the fleet panel says so.
    expect(page.locator(BOX)).to_have_attribute("data-state", "stopped")

    page.click("header form.logout button")
    expect(page.locator("form.login-form")).to_be_visible()
    assert not [c for c in page.context.cookies() if c["name"] == "gpuq_session"]
    print(f"browser test: {time.monotonic() - began:.1f}s")


def test_the_events_panel_lists_what_happened(stack: DevStack, client: JobsClient, page: Page) -> None:
    """Needs ``GET /v1/events`` (the canonical events); without the route the panel says 'No events yet.'."""
    assert _log_in(page, stack, stack.api_key) == 303
    job = client.submit({"model": MODEL, "prompt": "an event or two"})
    assert client.wait(job["id"], timeout_s=60)["status"] == "succeeded"
    done = page.locator(f"#events li[data-type='job.succeeded']:has-text('{job['id']}')")
    expect(done).to_have_count(1)
    expect(page.locator("#events li[data-type='job.queued']")).not_to_have_count(0)
