"""Sweeps' rows and their trials' jobs. A sweep's state changes only here, as compare-and-set
(``running`` -> ``succeeded`` | ``failed`` | ``stopped``); its Optuna study is in Optuna's own
tables (services/sweeps.py), named by ``study``."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from modelyard.errors import not_found
from modelyard.jobs import JobState
from modelyard.jobs.spec import STORED
from modelyard.jobs.sweep import SweepSpec
from modelyard.db.engine import Database
from modelyard.db.records import Job, User, job_from_row
from modelyard.db.schema import jobs, sweeps, users

SWEEP_STATES = ("running", "succeeded", "failed", "stopped")


@dataclass(frozen=True)
class Sweep:
    id: int
    user_id: int
    owner: str
    name: str
    state: str
    spec: SweepSpec
    study: str
    snapshot_key: str | None
    best_job_id: int | None
    message: str | None
    created_at: float
    ended_at: float | None


def _query() -> sa.Select[Any]:
    return sa.select(sweeps, users.c.name.label("owner")).join(users, users.c.id == sweeps.c.user_id)


def _sweep(row: sa.Row[Any]) -> Sweep:
    m = row._mapping
    return Sweep(id=m["id"], user_id=m["user_id"], owner=m["owner"], name=m["name"], state=m["state"],
                 spec=SweepSpec.model_validate(orjson.loads(m["spec"]), context=STORED), study=m["study"],
                 snapshot_key=m["snapshot_key"], best_job_id=m["best_job_id"], message=m["message"],
                 created_at=m["created_at"], ended_at=m["ended_at"])


def create_sweep(db: Database, *, user: User, spec: SweepSpec, snapshot_key: str | None,
                 now: float | None = None) -> Sweep:
    now = time.time() if now is None else now
    with db.write() as conn:
        sweep_id = conn.execute(sweeps.insert().values(
            user_id=user.id, name=spec.name, state="running", spec=orjson.dumps(spec.model_dump(mode="json")).decode(),
            study="", snapshot_key=snapshot_key, created_at=now,
        ).returning(sweeps.c.id)).scalar_one()
        # the study's name holds the id, so two sweeps of one name never share a study
        conn.execute(sweeps.update().where(sweeps.c.id == sweep_id).values(study=f"modelyard-sweep-{sweep_id}"))
    return get_sweep(db, sweep_id)


def get_sweep(db: Database, sweep_id: int, *, user: User | None = None) -> Sweep:
    """The sweep; ``user`` limits it to their own (admins see all). Another's answers not_found."""
    with db.read() as conn:
        row = conn.execute(_query().where(sweeps.c.id == sweep_id)).first()
    if row is None or (user is not None and not user.is_admin and row.user_id != user.id):
        raise not_found(f"sweep {sweep_id}")
    return _sweep(row)


def list_sweeps(db: Database, *, user: User, limit: int = 50, offset: int = 0) -> tuple[list[Sweep], int]:
    """The user's own sweeps, newest first, and how many they have."""
    cond = sweeps.c.user_id == user.id
    with db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(sweeps).where(cond)).scalar_one()
        rows = conn.execute(_query().where(cond).order_by(sweeps.c.id.desc()).limit(limit).offset(offset)).all()
    return [_sweep(r) for r in rows], total


def running_sweeps(db: Database) -> list[Sweep]:
    with db.read() as conn:
        return [_sweep(r) for r in conn.execute(_query().where(sweeps.c.state == "running").order_by(sweeps.c.id))]


def end_sweep(db: Database, sweep_id: int, state: str, *, best_job_id: int | None = None,
              message: str | None = None, now: float | None = None) -> bool:
    """``running`` -> ``state``; False if it had already ended. ``best_job_id``: written if given, else
    the best the driver kept stands (a row read earlier may predate it)."""
    assert state in SWEEP_STATES[1:]
    values: dict[str, object] = {"state": state, "message": message, "ended_at": time.time() if now is None else now}
    if best_job_id is not None:
        values["best_job_id"] = best_job_id
    with db.write() as conn:
        return conn.execute(sweeps.update().where(sweeps.c.id == sweep_id, sweeps.c.state == "running")
                            .values(**values)).rowcount == 1


def set_best(db: Database, sweep_id: int, best_job_id: int | None) -> None:
    with db.write() as conn:
        conn.execute(sweeps.update().where(sweeps.c.id == sweep_id).values(best_job_id=best_job_id))


def trial_jobs(db: Database, sweep_id: int) -> dict[int, Job]:
    """The sweep's trials' jobs by trial number (at most one each: ``ix_jobs_sweep`` is unique)."""
    with db.read() as conn:
        rows = conn.execute(sa.select(jobs, users.c.name.label("owner")).join(users, users.c.id == jobs.c.user_id)
                            .where(jobs.c.sweep_id == sweep_id)).all()
    return {r.trial: job_from_row(r) for r in rows}


def mark_pruned(db: Database, job_id: int, message: str) -> bool:
    """Say on a pruned trial's ended job why it stopped (its end wrote "stopped by a user")."""
    with db.write() as conn:
        return conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.state == JobState.STOPPED.value)
                            .values(message=message)).rowcount == 1
