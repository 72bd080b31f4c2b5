"""MLflow's search grammar as SQL (db/run_query.py) and experiments (db/experiments.py), on SQLite and
PostgreSQL alike: every operator on params, metrics, tags and attributes, the order, the pages."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelyard.db import experiments as store_experiments
from modelyard.db import jobs as store_jobs
from modelyard.db import run_query
from modelyard.db import runs as ingest
from modelyard.db.engine import Database
from modelyard.db.users import create_user
from modelyard.jobs import JobSpec, JobState
from modelyard.jobs.mlflow_search import parse_filter, parse_order_by


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    d = Database(database_url)
    d.migrate()
    yield d
    d.dispose()


def test_search_runs_every_operator_in_sql(db: Database) -> None:
    alice, _ = create_user(db, "alice")
    bob, _ = create_user(db, "bob")
    exp = store_experiments.create(db, alice.id, "e", {})
    runs = {}
    for name, lr, acc, tag, exp_id in (("a", "0.1", 0.5, "Big", exp), ("b", "0.01", 0.9, "big", exp),
                                       ("c", "adam", 0.7, "small", None)):
        job_id = store_jobs.create_run(db, user=alice, spec=JobSpec(command="x", name=name), experiment_id=exp_id)
        with db.write() as conn:
            ingest.ingest(conn, job_id, 0, ingest.RunData(params={"lr": lr}, tags={"size": tag},
                                                          points=[("acc", acc - 0.1, 0, None, 1.0), ("acc", acc, 1, None, 2.0)]))
        runs[name] = job_id
    store_jobs.end_run(db, runs["b"], JobState.SUCCEEDED)
    theirs = store_jobs.create_run(db, user=bob, spec=JobSpec(command="x", name="a"), experiment_id=None)

    def ids(text: str, order: list[str] | None = None, *, experiments: tuple[int, ...] = (0, exp),
            limit: int = 100, offset: int = 0) -> list[str]:
        found = run_query.search(db, user_id=alice.id, experiment_ids=experiments, deleted=False,
                                 clauses=parse_filter(text), order=parse_order_by(order), limit=limit, offset=offset)
        assert theirs not in found
        return [k for i in found for k, v in runs.items() if v == i]

    assert ids("metrics.acc > 0.6", ["metrics.acc DESC"]) == ["b", "c"]  # the latest value, not an earlier one
    assert ids("metrics.acc = 0.4") == [] and ids("metrics.acc <= 0.5") == ["a"] and ids("metrics.acc != 0.5", ["run_name"]) == ["b", "c"]
    assert ids("params.lr = '0.1'") == ["a"] and ids("params.lr != '0.1'", ["run_name"]) == ["b", "c"]
    assert ids("params.lr < 0.05") == ["b"] and ids("params.lr >= 0.05") == ["a"]
    assert ids("params.lr LIKE 'ad%'") == ["c"] and ids("params.lr IN ('0.1', 'adam')", ["run_name"]) == ["a", "c"]
    assert ids("tags.size LIKE 'b%'") == ["b"] and ids("tags.size ILIKE 'b%'", ["run_name"]) == ["a", "b"]
    assert ids("tags.size LIKE 'B_g'") == ["a"] and ids("tags.size NOT IN ('big', 'Big')") == ["c"]
    assert ids("attributes.status = 'FINISHED'") == ["b"] and ids("status != 'FINISHED'", ["run_name"]) == ["a", "c"]
    assert ids(f"attributes.run_id IN ('{runs['a']}', '{runs['c']}')", ["run_name DESC"]) == ["c", "a"]
    assert ids("run_name = 'b' and user_id = 'alice'") == ["b"]
    assert ids("attributes.start_time > 0", ["run_name"]) == ["a", "b", "c"]
    assert ids("", ["params.lr ASC"]) == ["b", "a", "c"]  # numbers by value, then text
    assert ids("", ["tags.size DESC"]) == ["c", "b", "a"]
    assert ids("", experiments=(0,)) == ["c"] and ids("", experiments=(exp,), limit=1, offset=1) == ["a"]
    store_jobs.update_run(db, runs["a"], run_deleted_at=1.0)
    assert ids("", ["run_name"]) == ["b", "c"]
    data = run_query.run_data(db, [runs["a"]])[runs["a"]]
    assert data.params == {"lr": "0.1"} and data.tags == {"size": "Big"}
    assert (data.metrics["acc"].value, data.metrics["acc"].step) == (0.5, 1)


def test_experiments_are_per_user_by_name(db: Database) -> None:
    alice, _ = create_user(db, "alice")
    bob, _ = create_user(db, "bob")
    a = store_experiments.create(db, alice.id, "shared-name", {"k": "v"})
    store_experiments.create(db, bob.id, "shared-name", {})  # names are unique per owner only
    with pytest.raises(store_experiments.ExperimentExists):
        store_experiments.create(db, alice.id, "shared-name", {})
    assert store_experiments.get(db, bob.id, a) is None
    found = store_experiments.by_name(db, alice.id, "shared-name")
    assert found is not None and found.id == a and found.tags == {"k": "v"}
    store_experiments.set_tag(db, found, "x", "y")
    store_experiments.set_stage(db, found, store_experiments.DELETED)
    listed = store_experiments.search(db, alice.id, stages=(store_experiments.DELETED,),
                                      clauses=parse_filter("tags.x = 'y'"), order=[], limit=10, offset=0)
    assert [e.id for e in listed] == [a]
    assert [e.name for e in store_experiments.search(db, alice.id, stages=(store_experiments.ACTIVE,), clauses=[],
                                                     order=[], limit=10, offset=0)] == ["Default"]
