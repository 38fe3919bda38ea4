"""The job store contract for listing, on every backend (see ``conftest.py``): jobs by status, oldest
first, following transitions, and the finished jobs whose callbacks are still pending.
"""

from __future__ import annotations

from shared.models import CallbackState
from shared.states import JobStatus
from shared.store.base import JobStore
from tests.contract.sample_jobs import make_job, move


# --- listing -------------------------------------------------------------------------------------------
def test_list_by_status_oldest_first(store: JobStore) -> None:
    store.create(make_job("job_new", queued_at=2000.0), None)
    store.create(make_job("job_old", queued_at=1000.0), None)
    store.create(make_job("job_done", status=JobStatus.SUCCEEDED), None)
    store.create(make_job("job_mid", queued_at=1500.0, status=JobStatus.STARTING), None)
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED])] == ["job_old", "job_new"]
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING])] == [
        "job_old",
        "job_mid",
        "job_new",
    ]
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED, JobStatus.STARTING], limit=2)] == [
        "job_old",
        "job_mid",
    ]
    assert store.list_by_status([]) == []
    assert store.list_by_status([JobStatus.RUNNING]) == []


def test_list_by_status_follows_transitions(store: JobStore) -> None:
    store.create(make_job("job_a", queued_at=1.0), None)
    store.create(make_job("job_b", queued_at=2.0), None)
    store.modify("job_a", move(JobStatus.RUNNING))
    assert [j.id for j in store.list_by_status([JobStatus.QUEUED])] == ["job_b"]
    running = store.list_by_status([JobStatus.RUNNING])
    assert [(j.id, j.version) for j in running] == [("job_a", 1)]


def test_list_finished_before_with_pending_callbacks(store: JobStore) -> None:
    terminal = [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.EXPIRED]
    rows = [  # id, status, finished_at, pending callback events, queued_at
        ("job_old_pending", JobStatus.SUCCEEDED, 100.0, ["e1"], 1.0),
        ("job_old_failed_pending", JobStatus.FAILED, 150.0, ["e2"], 2.0),
        ("job_recent_pending", JobStatus.SUCCEEDED, 900.0, ["e3"], 3.0),
        ("job_old_delivered", JobStatus.SUCCEEDED, 100.0, [], 4.0),
        ("job_running_pending", JobStatus.RUNNING, None, ["e4"], 5.0),
    ]
    for job_id, status, finished_at, pending, queued_at in rows:
        store.create(
            make_job(
                job_id,
                status=status,
                finished_at=finished_at,
                queued_at=queued_at,
                callback=CallbackState(pending=pending),
            ),
            None,
        )
    found = store.list_by_status(terminal, finished_before=500.0, with_pending_callbacks=True)
    assert [j.id for j in found] == ["job_old_pending", "job_old_failed_pending"]
    assert [
        j.id for j in store.list_by_status(terminal, finished_before=500.0, with_pending_callbacks=True, limit=1)
    ] == ["job_old_pending"]
    assert [j.id for j in store.list_by_status(terminal, with_pending_callbacks=True)] == [
        "job_old_pending",
        "job_old_failed_pending",
        "job_recent_pending",
    ]
    assert [j.id for j in store.list_by_status(terminal, finished_before=500.0)] == [
        "job_old_pending",
        "job_old_failed_pending",
        "job_old_delivered",
    ]
    # Delivering the pending event takes the job off the list.
    store.modify("job_old_pending", lambda j: j.model_copy(update={"callback": CallbackState(delivered=["e1"])}))
    assert [j.id for j in store.list_by_status(terminal, finished_before=500.0, with_pending_callbacks=True)] == [
        "job_old_failed_pending"
    ]
