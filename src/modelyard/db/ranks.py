"""The node ranks past 0 of a multi-node attempt: their report streams, heartbeats and ends.

Rank 0's supervisor reports on the attempt row itself (db/reports.py); each
other rank has a row here, made when the attempt is placed (db/jobs.py ``place``), with its own
``last_seq`` (the same exactly-one-past rule) and ``last_heartbeat``. A rank
sends log lines only: metrics, samples and outputs are rank 0's. Its lines go
into the attempt's one numbered log, tagged with its rank.

The whole job is one attempt: a rank that ends other than with exit 0 ends the
attempt (failed, lost, timed out, or retried, all ranks together) with a
message naming the rank and node; the other ranks learn it from their next
report's answer (410, so they end their command at once). A rank's exit 0
decides nothing: rank 0's end does, as it does for an attempt being stopped. After an attempt that succeeded or was
stopped, a rank still ending is answered ``stop`` and its last lines are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from modelyard.jobs import JobState, TerminationReason
from modelyard.db.engine import Database
from modelyard.db.jobs import finish_attempt
from modelyard.db.records import Attempt, attempt_from_row
from modelyard.db.schema import attempt_ranks, attempts

# An attempt ended in one of these is over for good (no retry reuses its resources): a rank's
# last lines are still taken, so a DDP job's ranks that end together keep their final words.
_LATE_OK = frozenset({JobState.SUCCEEDED, JobState.STOPPED})
_LIVE = (JobState.STARTING.value, JobState.RUNNING.value)


@dataclass(frozen=True)
class Rank:
    attempt_id: int
    rank: int
    node: str
    state: str
    last_seq: int
    last_heartbeat: float
    exit_code: int | None
    reason: str | None
    ended_at: float | None


def _rank_from_row(row: sa.Row[Any]) -> Rank:
    m = row._mapping
    return Rank(m["attempt_id"], m["rank"], m["node"], m["state"], m["last_seq"], m["last_heartbeat"],
                m["exit_code"], m["reason"], m["ended_at"])


def ranks_of(db: Database, attempt_id: int) -> list[Rank]:
    with db.read() as conn:
        rows = conn.execute(sa.select(attempt_ranks).where(attempt_ranks.c.attempt_id == attempt_id)
                            .order_by(attempt_ranks.c.rank)).all()
    return [_rank_from_row(r) for r in rows]


def locked_rank(conn: sa.Connection, attempt: Attempt, rank: int, *, now: float) -> Rank:
    """Rank ``rank``'s row (the attempt row is already locked by the caller); made if missing."""
    query = sa.select(attempt_ranks).where(attempt_ranks.c.attempt_id == attempt.id, attempt_ranks.c.rank == rank)
    row = conn.execute(query).first()
    if row is None:  # placed by code that made no rows: the rank's first report makes its row
        conn.execute(attempt_ranks.insert().values(
            attempt_id=attempt.id, rank=rank, node=attempt.slices[rank].node, state=JobState.STARTING.value,
            last_seq=0, last_heartbeat=now))
        row = conn.execute(query).first()
    return _rank_from_row(row)


def settled(db: Database, attempt: Attempt, *, now: float, grace: float) -> bool:
    """Whether no more lines can come for an ended attempt: a rank past 0 may still send its last
    lines after rank 0 ended it (``late_ok``) until it ends too, or ``grace`` (the heartbeat timeout:
    a rank silent that long is gone) after the attempt ended."""
    if not attempt.state.is_terminal() or attempt.nnodes < 2 or not late_ok(attempt):
        return attempt.state.is_terminal()
    if attempt.ended_at is not None and now - attempt.ended_at > grace:
        return True
    return all(r.state not in _LIVE for r in ranks_of(db, attempt.id))


def late_ok(attempt: Attempt) -> bool:
    """Whether a rank's batch is still taken although the attempt ended."""
    return attempt.state in _LATE_OK


def touch(conn: sa.Connection, r: Rank, *, now: float, seq: int | None = None) -> None:
    values: dict[str, Any] = {"last_heartbeat": now}
    if seq is not None:
        values["last_seq"] = seq
    conn.execute(attempt_ranks.update().where(attempt_ranks.c.attempt_id == r.attempt_id,
                                              attempt_ranks.c.rank == r.rank).values(**values))


def apply_event(conn: sa.Connection, attempt: Attempt, r: Rank, ev: Any, now: float) -> tuple[bool, JobState | None]:
    """A rank's ``started`` or ``exited`` event. Returns whether it ended the attempt, and the job's
    final state (None when the job was requeued for a retry)."""
    if not isinstance(ev, dict):
        return False, None
    kind = ev.get("type")
    at = float(ev.get("t") or now)
    c = attempt_ranks.c
    where = (c.attempt_id == r.attempt_id) & (c.rank == r.rank)
    if kind == "started":
        conn.execute(attempt_ranks.update().where(where, c.state == JobState.STARTING.value)
                     .values(state=JobState.RUNNING.value))
        return False, None
    if kind != "exited":
        return False, None
    try:
        reason = TerminationReason(ev.get("reason"))
    except ValueError:
        reason = TerminationReason.EXIT_NONZERO
    exit_code = ev.get("exit_code")
    conn.execute(attempt_ranks.update().where(where, c.state.in_(_LIVE)).values(
        state=reason.to_state().value, exit_code=exit_code, reason=reason.value, ended_at=at))
    if reason is TerminationReason.EXIT_ZERO or attempt.state is not JobState.RUNNING and \
            attempt.state is not JobState.STARTING:
        # rank 0's end decides a success, and a stop (STOPPING): its final batch carries the outputs' last sync
        return False, None
    what = ev.get("message") or reason.message(exit_code)
    return True, finish_attempt(conn, attempt, reason, exit_code=exit_code,
                                message=f"node rank {r.rank} (node {r.node}): {what}", now=at)


@dataclass(frozen=True)
class SilentRank:
    attempt: Attempt
    rank: int
    node: str
    last_heartbeat: float


def live_ranks(db: Database) -> list[SilentRank]:
    """Every rank past 0 that has not ended, of every active attempt, with its last heartbeat."""
    active = [s.value for s in (JobState.STARTING, JobState.RUNNING, JobState.STOPPING)]
    c = attempt_ranks.c
    with db.read() as conn:
        rows = conn.execute(
            sa.select(attempts, c.rank.label("rank_no"), c.node.label("rank_node"), c.last_heartbeat.label("rank_hb"))
            .join(attempt_ranks, c.attempt_id == attempts.c.id)
            .where(attempts.c.state.in_(active), c.state.in_(_LIVE))
            .order_by(attempts.c.id, c.rank)
        ).all()
    return [SilentRank(attempt_from_row(r), r.rank_no, r.rank_node, r.rank_hb) for r in rows]
