"""Failed items are stored with their kind and wait as long as that kind says (oaiod.state.backoff)."""

from __future__ import annotations

import datetime as dt
import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from oaiod.errors import FailureKind, describe
from oaiod.http import AuthError, Conflict, TransportError
from oaiod.model import now_stamp
from oaiod.state import StateRepo
from oaiod.state.backoff import BACKOFF, RETRIED_AFTER_LOCAL_CHANGE
from oaiod.storage.errors import ObjectNotFound, QuotaExceeded, StoragePermissionDenied


def _wait(next_try: str) -> float:
    """Seconds from now until a stored next try."""
    when = dt.datetime.strptime(next_try, "%Y%m%d%H%M%S%f").replace(tzinfo=dt.UTC)
    return (when - dt.datetime.now(dt.UTC)).total_seconds()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[StateRepo]:
    repo = StateRepo(tmp_path)
    yield repo
    repo.close()


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (TransportError("GET u: connection refused"), FailureKind.TRANSIENT),
        (Conflict("PUT", "http://hub/api/upload/", 409, {}), FailureKind.CONFLICT),
        (AuthError("GET", "http://hub/api/stampz/", 401, ""), FailureKind.AUTH),
        (QuotaExceeded("put 'o1/s/a': full", key="o1/s/a"), FailureKind.QUOTA),
        (StoragePermissionDenied("put 'o1/s/a': read-only", key="o1/s/a"), FailureKind.PERMISSION),
        (ObjectNotFound("'o1/s/a' is gone", key="o1/s/a"), FailureKind.NOT_FOUND),
        (OSError(errno.ENAMETOOLONG, "File name too long"), FailureKind.INVALID),
    ],
    ids=lambda value: str(value) if isinstance(value, FailureKind) else type(value).__name__,
)
def test_a_failure_is_stored_with_its_kind_and_waits_by_it(
    repo: StateRepo, failure: BaseException, kind: FailureKind
) -> None:
    row = repo.record_error("obj:o1", failure, what="push", oaio_id="o1")
    assert row.kind == kind and row.message == f"push: {describe(failure)}"  # for people, no raw request
    assert BACKOFF[kind].first - 5 < _wait(row.next_try) <= BACKOFF[kind].first
    (stored,) = repo.errors()
    assert stored.kind == kind and repo.backing_off("obj:o1")


def test_the_wait_doubles_per_kind_up_to_its_cap_and_restarts_when_the_kind_changes(repo: StateRepo) -> None:
    waits = [_wait(repo.record_error("obj:o1", TransportError("down"), oaio_id="o1").next_try) for _ in range(12)]
    assert 5 < waits[0] <= 10 and 15 < waits[1] <= 20 and 3590 < waits[-1] <= 3600  # 10 s doubling to 1 h
    auth = repo.record_error("obj:o1", AuthError("GET", "http://hub/", 401, ""), oaio_id="o1")
    assert auth.attempts == 1 and 3590 < _wait(auth.next_try) <= 3600  # a wrong password: an hour, not 10 s
    for _ in range(5):
        auth = repo.record_error("obj:o1", AuthError("GET", "http://hub/", 401, ""), oaio_id="o1")
    assert 6 * 3600 - 10 < _wait(auth.next_try) <= 6 * 3600
    conflict = [_wait(repo.record_error("f", Conflict("PUT", "u", 409, {})).next_try) for _ in range(8)]
    assert 5 < conflict[0] <= 10 and 290 < conflict[-1] <= 300  # a lost race: soon, at most every 5 min


def test_a_local_change_makes_only_what_waits_for_one_due(repo: StateRepo) -> None:
    repo.record_error("obj:o1", QuotaExceeded("full"), oaio_id="o1")
    repo.record_error("file:o1:a.txt", StoragePermissionDenied("read-only"), oaio_id="o1", path="a.txt")
    repo.record_error("obj:o2", QuotaExceeded("full"), oaio_id="o2")
    repo.record_error("obj:o3", AuthError("GET", "http://hub/", 401, ""), oaio_id="o3")
    assert repo.retry_errors("o1", RETRIED_AFTER_LOCAL_CHANGE) == 2
    assert not repo.backing_off("obj:o1") and not repo.backing_off("file:o1:a.txt")
    assert repo.backing_off("obj:o2") and repo.backing_off("obj:o3")
    assert repo.retry_errors("o3", RETRIED_AFTER_LOCAL_CHANGE) == 0  # no local change fixes a password
    assert repo.retry_errors() == 2  # ctl sync, or a new start: everything
    assert not any(repo.backing_off(key) for key in ("obj:o2", "obj:o3"))
    assert {row.kind for row in repo.errors()} == {"quota", "permission", "auth"}  # kept until a success clears them
    assert all(row.next_try <= now_stamp() for row in repo.errors())


def test_a_stored_failure_reads_for_people_without_the_raw_request(repo: StateRepo) -> None:
    """Issue 14 §5: ``ctl status`` lists stored failures; no ``POST http://…/api/… answered …`` in them."""
    refused = Conflict("POST", "http://127.0.0.1:8000/api/upload/", 409, {"detail": "stamp is older"}, "Conflict")
    assert repo.record_error("obj:o1", refused, what="push").message == "push: the server refused it: stamp is older"
    quoted = OSError("GET http://127.0.0.1:8000/api/hub/blobs/x broke")
    assert "http://" not in repo.record_error("obj:o2", quoted).message


def test_a_failure_recorded_while_the_clock_ran_ahead_is_due_once_it_is_corrected(
    repo: StateRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wall clock two days ahead when a push failed, then set right: the item is due at once, not in two days
    (sim seed 21's device waited out such a backoff and never converged). The machine's clock cannot be moved in a
    test, so the repo's clock is: ``now_stamp`` is patched for the failure only."""
    import oaiod.state.repo as repo_module

    ahead = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y%m%d%H%M%S%f")
    monkeypatch.setattr(repo_module, "now_stamp", lambda: ahead)
    repo.record_error("obj:x", TransportError("connection reset"), oaio_id="x")
    repo.record_error("file:x:a.txt", ObjectNotFound("gone", key="a.txt"), oaio_id="x", path="a.txt")
    assert repo.backing_off("obj:x")  # on the clock it was recorded by, it waits
    monkeypatch.setattr(repo_module, "now_stamp", now_stamp)
    assert not repo.backing_off("obj:x")
    assert repo.files_backing_off("x", "") == set()
    repo.record_error("obj:x", TransportError("connection reset"), oaio_id="x")  # a failure on the right clock waits
    assert repo.backing_off("obj:x")
