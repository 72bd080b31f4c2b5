"""Supervisor reports: stored exactly once, and read back as logs, metrics and samples.

A report batch is applied in one transaction that also advances the attempt's
``last_seq``, under the attempt row's lock. Only the batch numbered exactly one
past ``last_seq`` is stored: a batch seen before (a retry after a lost reply, or
a server restart) changes nothing but the heartbeat; a later one is a gap,
refused with the number expected (``SeqGap``), so that one forged number cannot
make every real batch after it look like a repeat. An attempt that has ended
(or was declared lost) takes no more batches (``AttemptEnded``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs import JobState, TerminationReason
from modelyard.db import ranks as store_ranks
from modelyard.db import runs
from modelyard.db.engine import Database
from modelyard.db.jobs import finish_attempt, mark_running
from modelyard.db.records import Attempt, attempt_from_row
from modelyard.db.schema import attempts, log_lines, metric_chunks, system_metrics
from modelyard.db.users import hash_token

if TYPE_CHECKING:
    import numpy as np

# db/series.py (numpy) is imported where points are first stored or read, not at
# server start: numpy is ~50-100 ms of a start that has a 1.5 s budget.

STREAMS = {"stdout": 0, "stderr": 1}
STREAM_NAMES = ("stdout", "stderr")


class SeqGap(ModelyardError):
    """A batch past the next expected one: the supervisor resends from ``expected``."""

    def __init__(self, attempt_id: int, seq: int, expected: int) -> None:
        super().__init__(ErrorCode.CONFLICT, f"attempt {attempt_id} expects batch {expected} next, not {seq}",
                         field="seq")
        self.expected = expected

    def to_dict(self) -> dict[str, object]:
        body = super().to_dict()
        body["expected_seq"] = self.expected
        return body


class AttemptEnded(ModelyardError):
    """The attempt ended (or was declared lost): its supervisor must end its command and go."""

    def __init__(self, attempt: Attempt) -> None:
        super().__init__(ErrorCode.GONE, f"attempt {attempt.number} of job {attempt.job_id} has ended "
                         f"({attempt.state.value}); no more reports are taken for it")


@dataclass
class ReportResult:
    stored: bool
    stop: bool
    attempt: Attempt
    final_state: JobState | None = None  # set when this report ended the job
    changed: list[str] = field(default_factory=list)  # "running", "ended"


def authenticate_attempt(db: Database, attempt_id: int, token: str) -> Attempt:
    with db.read() as conn:
        row = conn.execute(sa.select(attempts).where(attempts.c.id == attempt_id)).first()
    if row is None or row.token_hash != hash_token(token):
        # one answer for both: a wrong token must not reveal which attempts exist
        raise ModelyardError(ErrorCode.UNAUTHENTICATED, "unknown attempt or wrong token")
    return attempt_from_row(row)


def report_rank(batch: dict[str, Any]) -> int:
    """The node rank a batch is from (0 when it names none); INVALID unless an integer >= 0."""
    rank = batch.get("rank", 0)
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
        raise ModelyardError(ErrorCode.INVALID, "must be an integer >= 0 (the supervisor's node rank)", field="rank")
    return rank


def apply_report(db: Database, attempt: Attempt, batch: dict[str, Any], *, now: float | None = None) -> ReportResult:
    now = time.time() if now is None else now
    seq = batch.get("seq")
    if not isinstance(seq, int) or seq < 1:
        raise ModelyardError(ErrorCode.INVALID, "must be an integer >= 1", field="seq")
    rank = report_rank(batch)
    logs = batch.get("logs") or []
    points = batch.get("metrics") or []
    packed = batch.get("series") or {}
    system = batch.get("system") or []
    evts = batch.get("events") or []
    with db.write() as conn:
        row = conn.execute(
            _for_update(db, sa.select(attempts).where(attempts.c.id == attempt.id))
        ).first()
        current = attempt_from_row(row)
        if rank >= current.nnodes:
            raise ModelyardError(ErrorCode.INVALID, f"attempt {current.id} has {current.nnodes} node rank(s), "
                                 f"0 to {current.nnodes - 1}; there is no rank {rank}", field="rank")
        if rank:
            return _apply_rank_report(conn, current, rank, seq, logs, evts, now)
        if seq <= current.last_seq:
            conn.execute(attempts.update().where(attempts.c.id == attempt.id).values(last_heartbeat=now))
            return ReportResult(False, current.stop_requested, current)
        if current.state.is_terminal():
            raise AttemptEnded(current)
        if seq != current.last_seq + 1:
            raise SeqGap(current.id, seq, current.last_seq + 1)
        conn.execute(attempts.update().where(attempts.c.id == attempt.id).values(
            last_seq=seq, last_heartbeat=now, log_count=current.log_count + len(logs)))
        try:
            _insert_rows(conn, current, logs, points, packed, system)
        except (TypeError, ValueError, IndexError) as exc:
            raise ModelyardError(ErrorCode.INVALID, f"malformed report batch: {exc}", field="batch") from exc
        result = ReportResult(True, current.stop_requested, current)
        for ev in evts:
            _apply_event(conn, current, ev, now, result)
    return result


def _apply_rank_report(conn: sa.Connection, current: Attempt, rank: int, seq: int, logs: list[Any],
                       evts: list[Any], now: float) -> ReportResult:
    """A node rank > 0's batch (db/ranks.py): its own seq stream; log lines and events only."""
    r = store_ranks.locked_rank(conn, current, rank, now=now)
    stop = current.stop_requested or current.state.is_terminal()
    if seq <= r.last_seq:
        store_ranks.touch(conn, r, now=now)
        return ReportResult(False, stop, current)
    if current.state.is_terminal() and not store_ranks.late_ok(current):
        raise AttemptEnded(current)
    if seq != r.last_seq + 1:
        raise SeqGap(current.id, seq, r.last_seq + 1)
    store_ranks.touch(conn, r, now=now, seq=seq)
    conn.execute(attempts.update().where(attempts.c.id == current.id).values(log_count=current.log_count + len(logs)))
    try:
        _insert_rows(conn, current, logs, [], {}, [], node_rank=rank)
    except (TypeError, ValueError, IndexError) as exc:
        raise ModelyardError(ErrorCode.INVALID, f"malformed report batch: {exc}", field="batch") from exc
    result = ReportResult(True, stop, current)
    for ev in evts:
        ended, final = store_ranks.apply_event(conn, current, r, ev, now)
        if ended:  # this rank's failure ended the whole attempt (final None: the job was requeued)
            result.final_state = final
            result.changed.append("ended")
    return result


def _for_update(db: Database, query: sa.Select[Any]) -> sa.Select[Any]:
    # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs the row lock
    return query if db.is_sqlite else query.with_for_update()


def _insert_rows(conn: sa.Connection, a: Attempt, logs: list[Any], points: list[Any], packed: Any,
                 system: list[Any], *, node_rank: int = 0) -> None:
    # Logs and metrics arrive by the tens of thousands a batch: they go to the
    # driver as plain tuples (SQLAlchemy's per-row parameter processing cost
    # ~20 us a row, most of the time a batch took), and on PostgreSQL by COPY.
    if logs:
        base, attempt_id, streams = a.log_count, a.id, STREAMS
        runs.bulk_insert(conn, log_lines, ("attempt_id", "n", "t", "stream", "text", "node_rank"), [
            (attempt_id, base + i, float(t), streams.get(stream, 0), str(text), node_rank)
            for i, (t, stream, text) in enumerate(logs)
        ])
    if points or packed:
        # one row per series per batch, the points as one blob: the run's ingest path (db/runs.py)
        runs.insert_points(conn, a.job_id, a.id, points, packed)
    if system:
        conn.execute(system_metrics.insert(), [
            {"job_id": a.job_id, "attempt_id": a.id, "t": float(s["t"]), "cpu_percent": s.get("cpu_percent"),
             "memory_rss": s.get("memory_rss"), "gpus": orjson.dumps(s.get("gpus") or []).decode()}
            for s in system
        ])


def _apply_event(conn: sa.Connection, a: Attempt, ev: dict[str, Any], now: float, result: ReportResult) -> None:
    kind = ev.get("type")
    at = float(ev.get("t") or now)
    if kind == "started":
        if mark_running(conn, a, now=at):
            result.changed.append("running")
    elif kind == "exited":
        try:
            reason = TerminationReason(ev.get("reason"))
        except ValueError:
            reason = TerminationReason.EXIT_NONZERO
        result.final_state = finish_attempt(
            conn, a, reason, exit_code=ev.get("exit_code"), message=ev.get("message"), now=at)
        result.changed.append("ended")


@dataclass(frozen=True)
class LogPage:
    lines: list[dict[str, Any]]
    next_offset: int


def read_logs(db: Database, attempt_id: int, *, offset: int = 0, limit: int = 1000,
              node: int | None = None) -> LogPage:
    """Lines numbered ``offset`` on, of every node rank or of rank ``node`` only (numbers stay the attempt's).

    Filtered by node, a page that is not full has seen every line there was, so ``next_offset``
    moves past the attempt's last line (read first, as the bound: a line stored meanwhile is
    on the next page, never skipped), and a follower sees the end."""
    c = log_lines.c
    cond = [c.attempt_id == attempt_id, c.n >= offset]
    with db.read() as conn:
        last = None
        if node is not None:
            last = conn.execute(sa.select(sa.func.max(c.n)).where(c.attempt_id == attempt_id)).scalar()
            if last is None:
                return LogPage([], offset)
            cond += [c.node_rank == node, c.n <= last]
        rows = conn.execute(
            sa.select(c.n, c.t, c.stream, c.text, c.node_rank).where(*cond).order_by(c.n).limit(limit)
        ).all()
    lines = [{"n": n, "t": t, "stream": STREAM_NAMES[stream], "text": text, "node": rank}
             for n, t, stream, text, rank in rows]
    next_offset = lines[-1]["n"] + 1 if lines else offset
    if last is not None and len(lines) < limit:
        next_offset = max(next_offset, last + 1)
    return LogPage(lines, next_offset)


def read_metrics(db: Database, job_id: int, *, names: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    from modelyard.db import series as S

    out: dict[str, list[dict[str, Any]]] = {}
    for name in names if names is not None else metric_names(db, job_id):
        _last_id, cols = read_series(db, job_id, name)
        if cols.shape[1]:
            out[name] = S.as_points(cols)
    return dict(sorted(out.items()))


def read_series(db: Database, job_id: int, name: str, *, after_id: int = 0) -> tuple[int, np.ndarray]:
    """``(last chunk id, columns)`` of one series' points in chunks past ``after_id``, in order.

    The columns are a (4, n) float64 array: value, step, epoch, t (db/series.py).
    One index range scan of ``ix_metric_chunks_series`` through the driver's own
    cursor; a million points are ~20 rows.
    """
    mark = "?" if db.reader.dialect.paramstyle == "qmark" else "%s"
    sql = (f"SELECT id, n, points FROM metric_chunks WHERE job_id = {mark} AND name = {mark} "
           f"AND id > {mark} ORDER BY id")
    from modelyard.db import series as S

    with db.read() as conn:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cur.execute(sql, (job_id, name, after_id))
            rows = cur.fetchall()
        finally:
            cur.close()
    if not rows:
        return after_id, S.empty()
    return rows[-1][0], S.concat([S.decode(bytes(blob), n) for _id, n, blob in rows])


def iter_series(db: Database, job_id: int, name: str, *, rows: int = 8) -> Iterator[np.ndarray]:
    """One series' chunks in order, each a (4, n) array, read ``rows`` chunk rows at a time:
    a summary over a long series (compare's last and best) never holds it whole."""
    from modelyard.db import series as S

    c = metric_chunks.c
    query = sa.select(c.n, c.points).where(c.job_id == job_id, c.name == name).order_by(c.id)
    with db.read() as conn:
        result = conn.execution_options(yield_per=rows).execute(query)
        for batch in result.partitions(rows):
            for n, blob in batch:
                yield S.decode(bytes(blob), n)


def metric_names(db: Database, job_id: int) -> list[str]:
    c = metric_chunks.c
    with db.read() as conn:
        return sorted(conn.execute(sa.select(c.name).where(c.job_id == job_id).distinct()).scalars())


def latest_points(db: Database, job_ids: list[int], name: str) -> dict[int, dict[str, Any]]:
    """The last point of series ``name`` of each job that has one."""
    c = metric_chunks.c
    last_ids = sa.select(sa.func.max(c.id)).where(c.job_id.in_(job_ids), c.name == name).group_by(c.job_id)
    with db.read() as conn:
        rows = conn.execute(sa.select(c.job_id, c.last_value, c.last_step, c.last_epoch, c.last_t)
                            .where(c.id.in_(last_ids))).all()
    return {job_id: {"value": value, "step": step, "epoch": epoch, "time": t} for job_id, value, step, epoch, t in rows}


def final_metrics(db: Database, job_id: int) -> dict[str, float]:
    """The last value of each of a job's series, by name."""
    c = metric_chunks.c
    last_ids = sa.select(sa.func.max(c.id)).where(c.job_id == job_id).group_by(c.name)
    with db.read() as conn:
        rows = conn.execute(sa.select(c.name, c.last_value).where(c.id.in_(last_ids)).order_by(c.name)).all()
    return {name: value for name, value in rows}


def names_of_jobs(db: Database, job_ids: list[int]) -> list[str]:
    c = metric_chunks.c
    with db.read() as conn:
        return sorted(conn.execute(sa.select(c.name).where(c.job_id.in_(job_ids)).distinct()).scalars())


def count_points(db: Database, job_id: int) -> int:
    c = metric_chunks.c
    with db.read() as conn:
        return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(c.n), 0)).where(c.job_id == job_id))
                   .scalar_one())


def read_system_metrics(db: Database, job_id: int, *, limit: int = 5000) -> list[dict[str, Any]]:
    c = system_metrics.c
    with db.read() as conn:
        rows = conn.execute(
            sa.select(c.t, c.attempt_id, c.cpu_percent, c.memory_rss, c.gpus, attempts.c.number)
            .join(attempts, attempts.c.id == c.attempt_id)
            .where(c.job_id == job_id).order_by(c.id.desc()).limit(limit)
        ).all()
    return [
        {"t": t, "attempt": number, "cpu_percent": cpu, "memory_rss": rss, "gpus": orjson.loads(gpus) if gpus else []}
        for t, _attempt_id, cpu, rss, gpus, number in reversed(rows)
    ]
