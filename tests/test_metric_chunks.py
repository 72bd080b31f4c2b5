"""Metric points stored as chunks (db/series.py): the codec, refusing bad rows, the migration from
one row per point, and reads through the API (whole, columnar, windowed, latest), on SQLite and PostgreSQL."""
from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import orjson
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from modelyard.errors import ModelyardError
from modelyard.jobs import JobSpec
from modelyard.server.downsample import SeriesCache, downsample_index, window
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import reports as R
from modelyard.db import series as S
from modelyard.db import users as U
from modelyard.db.engine import MIGRATIONS
from modelyard.supervisor.batch import pack_series


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def running_attempt(db: Database, user: U.User) -> J.Attempt:
    job = J.create_job(db, user=user, spec=JobSpec(command=["true"]), snapshot_key=None)
    placed = J.place(db, job.id, gpus=[], token=f"tok-{job.id}", executor="local")
    assert placed is not None
    return placed[1]


def test_a_batch_becomes_one_chunk_per_series_and_round_trips() -> None:
    rows = [["loss", 0.5, 1, None, 10.0], ["acc", 0.1, None, 0, 10.0], ["loss", 0.25, 2, 3, 11.5]]
    chunks = S.group_rows(rows)
    assert [(c.name, c.n) for c in chunks] == [("loss", 2), ("acc", 1)]
    loss = S.decode(chunks[0].blob(), 2)
    assert S.as_points(loss) == [{"value": 0.5, "step": 1, "epoch": None, "time": 10.0},
                                 {"value": 0.25, "step": 2, "epoch": 3, "time": 11.5}]
    assert chunks[0].last() == (0.25, 2, 3, 11.5)
    assert chunks[1].last() == (0.1, None, 0, 10.0)
    cols = S.as_columns(loss)
    assert cols["step"].tolist() == [1, 2] and cols["epoch"] == [None, 3] and cols["value"].tolist() == [0.5, 0.25]
    with pytest.raises(ValueError, match="holds 7 numbers"):
        S.decode(b"\0" * 56, 2)


@pytest.mark.parametrize("row, words", [
    (["loss", 0.5, 1, None], "is \\[name, value, step, epoch, t\\]"),
    ([3, 0.5, 1, None, 1.0], "a metric name is a string"),
    (["", 0.5, 1, None, 1.0], "a metric name is a string"),
    (["x" * 201, 0.5, 1, None, 1.0], "a metric name is a string"),
    (["loss", None, 1, None, 1.0], "without a numeric value"),
    (["loss", "abc", 1, None, 1.0], "could not convert"),
    (["loss", [1, 2], 1, None, 1.0], "sequence"),
    (["loss", 0.5, 1.5, None, 1.0], "step and epoch are integers"),
    (["loss", 0.5, 1, None, None], "without a numeric value or time"),
    ("loss=0.5", "is \\[name, value, step, epoch, t\\]"),
])
def test_a_malformed_row_is_refused_by_name(row: object, words: str) -> None:
    with pytest.raises((ValueError, TypeError), match=words):
        S.group_rows([["ok", 1.0, 1, None, 1.0], row])


def test_a_malformed_batch_is_refused_whole_and_stores_nothing(db: Database) -> None:
    attempt = running_attempt(db, U.create_user(db, "alice")[0])
    bad = {"seq": 1, "logs": [[1.0, "stdout", "kept?"]],
           "metrics": [["loss", 0.5, 1, None, 1.0], ["loss", "NaN-ish", 2, None, 1.0]]}
    with pytest.raises(ModelyardError, match="malformed report batch") as e:
        R.apply_report(db, attempt, bad)
    assert e.value.field == "batch"
    assert R.read_metrics(db, attempt.job_id) == {} and R.read_logs(db, attempt.id).lines == []
    # the same seq again, well-formed, is stored: the refused batch did not advance it
    assert R.apply_report(db, attempt, {"seq": 1, "metrics": [["loss", 0.5, 1, None, 1.0]]}).stored
    assert R.count_points(db, attempt.job_id) == 1


def test_series_read_whole_and_incrementally_in_order(db: Database) -> None:
    user = U.create_user(db, "alice")[0]
    attempt = running_attempt(db, user)
    for seq in range(1, 4):
        R.apply_report(db, attempt, {"seq": seq, "metrics": [
            ["loss", float(seq * 10 + i), seq * 10 + i, seq, 100.0 + i] for i in range(5)] + [
            ["acc", 0.5, None, None, 1.0]]})
    assert R.metric_names(db, attempt.job_id) == ["acc", "loss"]
    last_id, cols = R.read_series(db, attempt.job_id, "loss")
    assert cols.shape == (4, 15) and cols[1].tolist() == [s * 10 + i for s in (1, 2, 3) for i in range(5)]
    more_id, more = R.read_series(db, attempt.job_id, "loss", after_id=last_id)
    assert more.shape == (4, 0) and more_id == last_id
    R.apply_report(db, attempt, {"seq": 4, "metrics": [["loss", 1.0, 40, 4, 200.0]]})
    newest_id, more = R.read_series(db, attempt.job_id, "loss", after_id=last_id)
    assert newest_id > last_id and more[1].tolist() == [40.0]
    assert R.latest_points(db, [attempt.job_id], "loss") == {
        attempt.job_id: {"value": 1.0, "step": 40, "epoch": 4, "time": 200.0}}
    assert R.count_points(db, attempt.job_id) == 19

    cache = SeriesCache(max_points=100)
    assert len(cache.columns(db, attempt.job_id, "loss")) == 16
    R.apply_report(db, attempt, {"seq": 5, "metrics": [["loss", 2.0, 41, 4, 201.0]]})
    grown = cache.columns(db, attempt.job_id, "loss")  # only the new chunk is read
    assert len(grown) == 17 and grown.cols[1, -1] == 41.0


def test_a_series_read_chunk_by_chunk_is_the_whole_series_in_order(db: Database) -> None:
    user = U.create_user(db, "alice")[0]
    attempt = running_attempt(db, user)
    for seq in range(1, 8):
        R.apply_report(db, attempt, {"seq": seq, "metrics": [
            ["loss", float(seq * 10 + i), seq * 10 + i, None, 100.0 + i] for i in range(seq)] + [
            ["acc", 0.5, None, None, 1.0]]})
    chunks = list(R.iter_series(db, attempt.job_id, "loss", rows=3))  # fetched 3 rows at a time
    assert [c.shape[1] for c in chunks] == list(range(1, 8))
    assert np.array_equal(S.concat(chunks), R.read_series(db, attempt.job_id, "loss")[1], equal_nan=True)
    assert list(R.iter_series(db, attempt.job_id, "nothing")) == []


def test_window_and_downsample_on_columns() -> None:
    n = 10_000
    cols = np.vstack([np.sin(np.arange(n) / 100), np.arange(n, dtype=float), np.arange(n) // 1000,
                      np.arange(n) * 0.5]).astype("<f8")
    cols[0, 5000] = 50.0  # a spike survives downsampling
    idx = downsample_index(cols, 500)
    assert idx is not None and len(idx) <= 500 and 5000 in idx and idx[0] == 0 and idx[-1] == n - 1
    assert downsample_index(cols, n) is None
    inside = window(cols, "step", 100, 199)
    assert inside[1].tolist() == list(range(100, 200))
    assert window(cols, "epoch", 9, None).shape[1] == 1000
    assert window(cols, "time", None, 0.5)[1].tolist() == [0.0, 1.0]


def test_migration_moves_points_rows_into_chunks_in_order(database_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(database_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
    metrics = sa.table("metrics", sa.column("job_id"), sa.column("attempt_id"), sa.column("name"),
                       sa.column("value"), sa.column("step"), sa.column("epoch"), sa.column("t"))
    # two attempts of job 1 (their points interleave names), and job 2
    rows = ([{"job_id": 1, "attempt_id": 1, "name": n, "value": float(i), "step": i, "epoch": None, "t": 1.0 + i}
             for i in range(3) for n in ("loss", "acc")]
            + [{"job_id": 1, "attempt_id": 2, "name": "loss", "value": -1.0, "step": 0, "epoch": 7, "t": 9.0}]
            + [{"job_id": 2, "attempt_id": 3, "name": "loss", "value": 5.0, "step": None, "epoch": None, "t": 2.0}])
    with engine.begin() as conn:
        conn.execute(metrics.insert(), rows)
    engine.dispose()

    db = Database(database_url)
    db.migrate()
    try:
        assert R.read_metrics(db, 1) == {
            "acc": [{"value": float(i), "step": i, "epoch": None, "time": 1.0 + i} for i in range(3)],
            "loss": [{"value": float(i), "step": i, "epoch": None, "time": 1.0 + i} for i in range(3)]
            + [{"value": -1.0, "step": 0, "epoch": 7, "time": 9.0}]}
        assert R.read_metrics(db, 2) == {"loss": [{"value": 5.0, "step": None, "epoch": None, "time": 2.0}]}
        assert R.latest_points(db, [1, 2], "loss") == {
            1: {"value": -1.0, "step": 0, "epoch": 7, "time": 9.0},
            2: {"value": 5.0, "step": None, "epoch": None, "time": 2.0}}
        with db.read() as conn:
            assert "metrics" not in sa.inspect(conn).get_table_names()
    finally:
        db.dispose()


def _packed(cols: list[list[float]]) -> dict[str, object]:
    arr = np.array(cols, dtype="<f8")
    return {"n": arr.shape[1], "points": base64.b64encode(arr.tobytes()).decode()}


def test_the_supervisors_packed_series_round_trip_through_a_report(db: Database) -> None:
    attempt = running_attempt(db, U.create_user(db, "alice")[0])
    points = [("loss", 0.5, 1, None, 1.0), ("acc", 0.9, None, 2, 1.0), ("loss", 0.25, 2, None, 1.5)]
    body = orjson.loads(orjson.dumps({"seq": 1, "series": pack_series(points)}))  # as the wire carries it
    assert R.apply_report(db, attempt, body).stored
    assert R.read_metrics(db, attempt.job_id) == {
        "acc": [{"value": 0.9, "step": None, "epoch": 2, "time": 1.0}],
        "loss": [{"value": 0.5, "step": 1, "epoch": None, "time": 1.0},
                 {"value": 0.25, "step": 2, "epoch": None, "time": 1.5}]}


@pytest.mark.parametrize("series, words", [
    ([1, 2], "series is an object"),
    ({"loss": {"n": 1}}, "a series is"),
    ({"loss": {"n": 0, "points": ""}}, "a series is"),
    ({"loss": {"n": 1, "points": "not base64!"}}, "not base64"),
    ({"loss": {"n": 2, "points": base64.b64encode(b"\0" * 32).decode()}}, "of 2 points holds 4 numbers"),
    ({"loss": _packed([[math.inf], [1], [0], [1.0]])}, "finite value or time"),
    ({"loss": _packed([[1.0], [1], [0], [math.nan]])}, "finite value or time"),
    ({"loss": _packed([[1.0], [1.5], [0], [1.0]])}, "step and epoch are integers"),
    ({"loss": _packed([[1.0], [1], [math.inf], [1.0]])}, "step and epoch are integers"),
    ({"x" * 201: _packed([[1.0], [1], [0], [1.0]])}, "a metric name is a string"),
])
def test_a_malformed_packed_series_refuses_the_batch(db: Database, series: object, words: str) -> None:
    attempt = running_attempt(db, U.create_user(db, "alice")[0])
    with pytest.raises(ModelyardError, match=words):
        R.apply_report(db, attempt, {"seq": 1, "logs": [[1.0, "stdout", "x"]], "series": series,
                                     "metrics": [["ok", 1.0, 1, None, 1.0]]})
    assert R.count_points(db, attempt.job_id) == 0 and R.read_logs(db, attempt.id).lines == []
