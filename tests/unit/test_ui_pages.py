"""The dashboard's pages and panels rendered from a real SQLite store: what a person sees, that outside text
is escaped, and that no page ever holds the API key. Its shipped files are the ones the docs show."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.boxes.pools import PoolConfig, Pools
from shared.boxes.providers.local import LocalProvider
from shared.boxes.registry import claim_starts, mark_ready, reserve_slot
from shared.boxes.scaling import decide_target
from shared.clock import FakeClock
from shared.controlplane import ControlPlane
from shared.errors import NotFound
from shared.models import Job
from shared.security.keys import hash_key
from shared.security.signing import NonceCache
from shared.settings import ControlPlaneSettings
from shared.states import JobStatus
from shared.store import SqliteJobStore
from shared.store.queue import TaskQueue
from shared.ui.assets import ASSETS, asset
from shared.ui.pages import dashboard_page, login_page
from shared.ui.panels import REASONS, cost_panel, duration, fleet_panel, jobs_panel, reason_text
from shared.ui.session import open_session

ROOT = Path(__file__).resolve().parents[2]
KEY = "gpuq_page_key"
NOW = 1_700_000_000.0


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlane]:
    settings = ControlPlaneSettings(data_dir=tmp_path, api_keys=f"alice:{KEY}", budget_daily_usd=5.0)
    plane = ControlPlane(
        settings=settings,
        store=SqliteJobStore(tmp_path / "gpuq.db"),
        queue=TaskQueue(settings),
        provider=LocalProvider(tmp_path / "boxes"),
        nonces=NonceCache(),
        pools=Pools((PoolConfig(name="default", models=["llama3.2:1b"], max_boxes=2),)),
        clock=FakeClock(NOW),
    )
    yield plane
    plane.store.close()


def _job(cp: ControlPlane, job_id: str, **fields: object) -> Job:
    base: dict[str, object] = {"owner": "alice", "model": "llama3.2:1b", "max_queue_s": 60, "timeout_s": 60}
    job = Job.model_validate({"id": job_id, "queued_at": NOW - 75, **base, **fields})
    return cp.store.create(job, None)[0]


def test_the_jobs_panel_says_why_each_job_waits_and_offers_its_buttons(cp: ControlPlane) -> None:
    _job(cp, "job_waits", status=JobStatus.STARTING, status_reason="provisioning_instance")
    _job(cp, "job_done", status=JobStatus.SUCCEEDED, status_reason=None, finished_at=NOW - 5, started_at=NOW - 20)
    _job(cp, "job_called", status=JobStatus.FAILED, callback_url="https://example.com/hook", finished_at=NOW - 1)
    _job(cp, "job_bobs", owner="bob", status=JobStatus.QUEUED)
    panel = jobs_panel(cp, "alice")
    assert "job_bobs" not in panel  # another key's jobs are not shown
    waits = re.search(r'<tr class="job" data-job="job_waits".*?</tr>', panel)
    assert waits is not None and "a GPU box is starting for it" in waits[0] and "waited 1m 15s" in waits[0]
    assert 'data-action="cancel"' in waits[0] and 'data-action="watch"' in waits[0]
    done = re.search(r'<tr class="job" data-job="job_done".*?</tr>', panel)
    assert done is not None and 'data-action="cancel"' not in done[0] and "ran 15s" in done[0]
    assert 'data-action="resend" data-job="job_called"' in panel  # finished, with a callback
    assert panel.index("job_called") < panel.index("job_done")  # latest finished first


def test_outside_text_is_escaped(cp: ControlPlane) -> None:
    _job(cp, "job_x", model="<img src=x onerror=alert(1)>", status_reason="<script>")
    panel = jobs_panel(cp, "alice")
    assert "<img" not in panel and "<script>" not in panel and html.escape("<script>") in panel


def test_every_status_reason_reads_as_words() -> None:
    assert reason_text("budget_exceeded") == REASONS["budget_exceeded"]
    assert reason_text("something_new") == "something new" and reason_text(None) == ""
    assert [duration(s) for s in (None, 4, 75, 3725)] == ["—", "4s", "1m 15s", "1h 02m"]


def test_the_fleet_panel_lists_every_box_of_every_pool(cp: ControlPlane) -> None:
    panel = fleet_panel(cp)
    assert 'data-pool="default"' in panel and "idle policy break-even" in panel
    for box in ("default-1", "default-2"):
        assert f'<tr class="box" data-box="{box}" data-state="stopped">' in panel


def test_a_box_up_shows_its_uptime_jobs_and_why_it_started(cp: ControlPlane) -> None:
    pool = cp.pools.pools[0]
    decision = decide_target(queued_work_s=1, active=0, slots_per_box=4, cold_start_s=1, max_boxes=1)
    assert claim_starts(cp, pool, decision) == ["default-1"]
    assert isinstance(cp.clock, FakeClock)
    cp.clock.advance(65)
    mark_ready(cp, "default-1", "default")
    assert reserve_slot(cp, "default-1", "job_one", work_s=5, slots=4)
    row = re.search(r'<tr class="box" data-box="default-1" data-state="ready">.*?</tr>', fleet_panel(cp))
    assert row is not None
    assert "<td>1m 05s</td><td>1 / 4</td>" in row[0] and "work waits and no box is up" in row[0]


def test_the_cost_panel_measures_the_day_against_its_cap_and_says_when_there_is_none(cp: ControlPlane) -> None:
    panel = cost_panel(cp)
    assert '<meter min="0" max="1"' in panel and "0% of $5.00" in panel
    assert "this month" in panel and "no cap" in panel and "Last 24 h" in panel


def test_the_dashboard_holds_the_csrf_token_and_never_the_key(cp: ControlPlane) -> None:
    _job(cp, "job_mine")
    session = open_session("secret", cp.settings.api_key_map(), KEY, now=NOW, lifetime_s=60)
    page = dashboard_page(cp, session)
    assert KEY not in page and hash_key(KEY) not in page and session.token not in page
    assert f'<meta name="gpuq-csrf" content="{session.csrf}">' in page
    assert f'name="csrf_token" value="{session.csrf}"' in page  # the logout form's
    assert "job_mine" in page and 'data-box="default-1"' in page and "/ui/static/policies.png" in page
    assert '<meta name="gpuq-refresh-ms" content="3000">' in page
    assert "<script>" not in page and " style=" not in page  # the CSP allows neither inline scripts nor styles


def test_the_login_page_posts_the_key_in_the_body_and_shows_an_error_escaped(cp: ControlPlane) -> None:
    page = login_page(cp, "<b>no</b>")
    assert '<form method="post" action="/ui/login"' in page and 'type="password"' in page
    assert "&lt;b&gt;no&lt;/b&gt;" in page and "12h 00m" in page
    assert 'class="error"' not in login_page(cp)


def test_the_shipped_files_are_served_and_nothing_else() -> None:
    for name, content_type in ASSETS.items():
        found = asset(name)
        assert found.body and found.content_type == content_type and found.etag.startswith('"')
    with pytest.raises(NotFound):
        asset("../pages.py")


def test_the_policy_plot_served_is_the_one_the_docs_show() -> None:
    """bench/plot_policies.py writes both; a stale copy would show another simulation than docs/."""
    assert asset("policies.png").body == (ROOT / "docs" / "policies.png").read_bytes()


def test_the_script_never_handles_the_key() -> None:
    script = asset("dashboard.js").body.decode()
    assert "Authorization" not in script and "localStorage" not in script and "api_key" not in script
    assert "X-CSRF-Token" in script and 'credentials: "same-origin"' in script
