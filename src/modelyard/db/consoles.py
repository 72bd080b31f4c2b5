"""The one query a console's proxy needs that an ``Attempt`` record does not carry: its token's hash."""
from __future__ import annotations

import sqlalchemy as sa

from modelyard.db.engine import Database
from modelyard.db.records import Attempt, attempt_from_row
from modelyard.db.schema import attempts
from modelyard.jobs import JobState


def running_attempt(db: Database, job_id: int) -> tuple[Attempt, str] | None:
    """The job's running attempt and the hash of its report token; None when none runs."""
    with db.read() as conn:
        row = conn.execute(sa.select(attempts).where(attempts.c.job_id == job_id,
                                                     attempts.c.state == JobState.RUNNING.value)
                           .order_by(attempts.c.number.desc()).limit(1)).first()
    return (attempt_from_row(row), row.token_hash) if row is not None else None
