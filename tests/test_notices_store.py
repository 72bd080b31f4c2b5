"""db/notices.py and the notices the state changes write, on SQLite and PostgreSQL (``database_url``)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import notices as N
from modelyard.db import reports as R
from modelyard.db import users as U
from modelyard.errors import ModelyardError
from modelyard.jobs import JobSpec, TerminationReason
from modelyard.jobs import notify


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def _run(db: Database, user: U.User, reason: TerminationReason, **spec: object) -> J.Job:
    job = J.create_job(db, user=user, spec=JobSpec(command=["true"], name="train", **spec), snapshot_key=None)
    placed = J.place(db, job.id, gpus=[], token=f"tok-{job.id}", executor="local")
    assert placed is not None
    with db.write() as conn:
        J.mark_running(conn, placed[1], now=1.0)
    J.end_attempt(db, placed[1], reason, exit_code=1 if reason is TerminationReason.EXIT_NONZERO else 0)
    return J.get_job(db, job.id)


def test_state_changes_write_the_notices_their_owner_chose(db: Database) -> None:
    ann, bob = U.create_user(db, "ann")[0], U.create_user(db, "bob")[0]
    N.update_profile(db, bob.id, notify=notify.merged(None, {"started": ["notice"], "failed": []}))
    failed, succeeded = _run(db, ann, TerminationReason.EXIT_NONZERO), _run(db, ann, TerminationReason.EXIT_ZERO)
    _run(db, bob, TerminationReason.EXIT_NONZERO)
    _run(db, ann, TerminationReason.EXIT_NONZERO, retries=1)  # requeued at once: nothing to tell yet
    mine = N.list_notices(db, ann.id)
    assert [(n.job_id, n.event) for n in mine] == [(succeeded.id, "succeeded"), (failed.id, "failed")]
    assert mine[1].title == f"Job #{failed.id} train failed" and mine[1].body == failed.message
    assert [n.event for n in N.list_notices(db, bob.id)] == ["started"]
    queued = J.create_job(db, user=ann, spec=JobSpec(command=["true"]), snapshot_key=None)
    J.request_stop(db, queued)
    assert N.list_notices(db, ann.id, limit=1)[0].event == "stopped"


def test_reading_is_per_user(db: Database) -> None:
    ann, bob = U.create_user(db, "ann")[0], U.create_user(db, "bob")[0]
    for _ in range(3):
        _run(db, ann, TerminationReason.EXIT_NONZERO)
    first = N.list_notices(db, ann.id)[-1]
    with pytest.raises(ModelyardError, match="not found"):
        N.mark_read(db, bob.id, first.id)
    assert N.mark_read(db, ann.id, first.id, now=5.0).read_at == 5.0
    assert N.mark_read(db, ann.id, first.id, now=9.0).read_at == 5.0  # read once
    assert N.unread_count(db, ann.id) == 2 and len(N.list_notices(db, ann.id, unread=True)) == 2
    assert N.mark_all_read(db, bob.id) == 0 and N.mark_all_read(db, ann.id) == 2
    assert N.unread_count(db, ann.id) == 0


def test_profile_and_final_metrics(db: Database) -> None:
    ann = U.create_user(db, "ann")[0]
    assert N.update_profile(db, ann.id, email="ann@example.com").email == "ann@example.com"
    job = _run(db, ann, TerminationReason.EXIT_ZERO)
    attempt = J.job_attempts(db, job.id)[0]
    with db.write() as conn:
        R._insert_rows(conn, attempt, [], [["loss", 0.5, 1, None, 1.0], ["acc", 0.1, 1, None, 1.0]], {}, [])
        R._insert_rows(conn, attempt, [], [["loss", 0.25, 2, None, 2.0]], {}, [])
    assert R.final_metrics(db, job.id) == {"acc": 0.1, "loss": 0.25}
