from __future__ import annotations

import pytest

from shared.errors import InvalidTransition
from shared.states import ALLOWED, JobStatus, check_transition


def test_terminal_statuses_have_no_way_out() -> None:
    for status in JobStatus:
        if status.is_terminal():
            assert ALLOWED[status] == frozenset()
            for target in JobStatus:
                with pytest.raises(InvalidTransition):
                    check_transition(status, target)


def test_every_non_terminal_status_can_be_cancelled_or_failed() -> None:
    for status in JobStatus:
        if not status.is_terminal():
            check_transition(status, JobStatus.CANCELLED)
            check_transition(status, JobStatus.FAILED)


def test_a_job_cannot_skip_back_to_waiting_from_success() -> None:
    with pytest.raises(InvalidTransition, match="succeeded job cannot become queued"):
        check_transition(JobStatus.SUCCEEDED, JobStatus.QUEUED)


def test_waiting_and_terminal_are_disjoint() -> None:
    assert {s for s in JobStatus if s.is_waiting()} == {JobStatus.QUEUED, JobStatus.STARTING}
    assert not any(s.is_waiting() and s.is_terminal() for s in JobStatus)
