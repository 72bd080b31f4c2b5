"""Parameters and tags in the db, and the jobs listing's filters and sorts as SQL, on SQLite and
PostgreSQL (the ``database_url`` fixture); the query parser's refusals."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import users as U
from modelyard.db.records import Job, User
from modelyard.db.schema import job_params
from modelyard.jobs import JobSpec, JobState
from modelyard.db import experiments as E
from modelyard.jobs.query import JobQuery, QueryError, check_text, parse_filter, parse_search, parse_sort, parse_time


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


def submit(db: Database, user: User, now: float = 1000.0, dataset: str | None = None,
           environment: str | None = None, **spec: object) -> Job:
    return J.create_job(db, user=user, spec=JobSpec(command=["true"], **spec), snapshot_key=None, now=now,
                        dataset=dataset, environment=environment)


def ids(db: Database, user: User, text: str = "", **kw: object) -> list[int]:
    query = parse_search(text, JobQuery(**kw)) if text else JobQuery(**kw)  # type: ignore[arg-type]
    return [j.id for j in J.list_jobs(db, user=user, all_users=True, query=query)[0]]


def test_params_and_tags_filter_and_sort_in_sql(db: Database) -> None:
    alice, bob = U.create_user(db, "alice")[0], U.create_user(db, "bob", admin=True)[0]
    a = submit(db, alice, params={"lr": 0.1, "opt": "adam", "warm": True}, tags=["baseline", "resnet"], now=100)
    b = submit(db, alice, params={"lr": 0.01, "opt": "sgd"}, tags=["baseline"], now=200, dataset="digits:abcd1234")
    c = submit(db, bob, params={"lr": 3, "opt": "adam"}, now=300, environment="torch")
    d = submit(db, bob, name="no-params", now=400)
    assert J.get_job(db, a.id).tags == ("baseline", "resnet") and J.get_job(db, d.id).tags == ()
    with db.read() as conn:  # as stored: the value's JSON text, and its number unless a boolean or text
        rows = conn.execute(sa.select(job_params.c.name, job_params.c.value, job_params.c.num)
                            .where(job_params.c.job_id == a.id).order_by(job_params.c.name)).all()
    assert [tuple(r) for r in rows] == [("lr", "0.1", 0.1), ("opt", '"adam"', None), ("warm", "true", None)]
    assert ids(db, bob, "lr>=0.1") == [c.id, a.id]  # numbers compare as numbers: 3 > 0.1
    assert ids(db, bob, "lr<0.1") == [b.id]
    assert ids(db, bob, "lr=0.010") == [b.id]
    assert ids(db, bob, "lr=3.0") == [c.id]  # an int and a float of one value are equal
    assert ids(db, bob, "opt=adam") == [c.id, a.id]
    assert ids(db, bob, "opt!=adam") == [b.id]  # a job without the parameter matches no expression on it
    assert ids(db, bob, "warm=true") == [a.id]
    assert ids(db, bob, "opt=adam lr<1") == [a.id]  # every filter must hold
    assert ids(db, bob, "tag:baseline") == [b.id, a.id]
    assert ids(db, bob, "tag:baseline tag:resnet") == [a.id]
    assert ids(db, bob, "tag:nope") == []
    assert ids(db, bob, "owner:bob") == [d.id, c.id]
    assert ids(db, bob, "state:queued state:running") == [d.id, c.id, b.id, a.id]
    assert ids(db, bob, "state:running") == []
    assert ids(db, bob, "dataset:digits") == [b.id] == ids(db, bob, "dataset:digits:abcd1234")
    assert ids(db, bob, "dataset:digit") == []  # a name, not a prefix of one
    assert ids(db, bob, "env:torch") == [c.id]
    assert ids(db, bob, since=200, until=400) == [c.id, b.id]
    assert ids(db, bob, "no-params") == [d.id]
    # sorts: by a parameter's number, jobs without it last either way; by other columns; ids break ties
    assert ids(db, bob, "sort:param:lr") == [b.id, a.id, c.id, d.id]
    assert ids(db, bob, "sort:-param:lr") == [c.id, a.id, b.id, d.id]
    assert ids(db, bob, "sort:param:opt") == [c.id, a.id, b.id, d.id]  # text: "adam" < "sgd", newest first in ties
    assert ids(db, bob, "sort:id") == [a.id, b.id, c.id, d.id]
    assert ids(db, bob, "sort:-created") == [d.id, c.id, b.id, a.id]
    assert ids(db, bob, "sort:owner") == [b.id, a.id, d.id, c.id]
    # a plain user's listing stays their own, whatever the query says
    jobs, total = J.list_jobs(db, user=alice, all_users=True, query=parse_search("owner:bob"))
    assert (jobs, total) == ([], 0)
    jobs, total = J.list_jobs(db, user=alice, query=parse_search("sort:-param:lr"), limit=1, offset=1)
    assert [j.id for j in jobs] == [b.id] and total == 2


def test_tags_change_after_the_fact(db: Database) -> None:
    alice = U.create_user(db, "alice")[0]
    job = submit(db, alice, tags=["a"])
    job = J.change_tags(db, job, add=["b", "a", "c"])
    assert job.tags == ("a", "b", "c") and job.spec.tags == ["a"]  # the spec keeps what was submitted
    job = J.change_tags(db, job, remove=["a", "zzz"])
    assert job.tags == ("b", "c")
    assert J.list_jobs(db, user=alice, query=parse_search("tag:b"))[1] == 1
    assert J.list_jobs(db, user=alice, query=parse_search("tag:a"))[1] == 0
    with pytest.raises(Exception, match="the limit is 50"):
        J.change_tags(db, job, add=[f"t{i}" for i in range(60)])
    assert J.get_job(db, job.id).tags == ("b", "c")  # all or nothing


def test_the_experiment_filter_is_each_owners_own(db: Database) -> None:
    alice, bob = (U.create_user(db, n)[0] for n in ("alice", "bob"))
    theirs = {u.id: J.create_job(db, user=u, spec=JobSpec(command=["true"]), snapshot_key=None,
                                 experiment_id=E.create(db, u.id, "x", {})).id for u in (alice, bob)}
    default = submit(db, alice).id
    root = U.create_user(db, "root", admin=True)[0]
    assert sorted(ids(db, root, experiment="x")) == sorted(theirs.values())  # every owner's, each in their own "x"
    assert ids(db, alice, experiment="x") == [theirs[alice.id]]
    assert ids(db, alice, experiment="Default") == [default] and ids(db, alice, experiment="y") == []


def test_bad_queries_name_what_is_wrong() -> None:
    for text, field in [("lr>>1", "param"), ("lr<adam", "param"), ("=3", "param"), ("lr=", "param"),
                        ("9lr=3", "param")]:
        with pytest.raises(QueryError) as e:
            parse_filter(text)
        assert e.value.field == field and text in str(e.value)
    with pytest.raises(QueryError, match="sort 'size'"):
        parse_sort("size")
    with pytest.raises(QueryError, match="since 'yesterday'"):
        parse_time("yesterday", "since")
    with pytest.raises(QueryError, match="unknown state 'done'"):
        parse_search("state:done")
    for query, field in ((JobQuery(experiment="a\0b"), "experiment"), (parse_search("owner:a\0b"), "owner"),
                         (JobQuery(text="x\0"), "q")):
        with pytest.raises(QueryError, match="NUL") as e:  # no PostgreSQL text holds one
            check_text(query)
        assert e.value.field == field
    assert parse_time("2026-12-01", "since") == parse_time("1796083200", "since") == 1796083200.0
    assert parse_time("2026-12-01T01:00+01:00", "until") == 1796083200.0
    assert parse_filter("lr >= 1e-3").value == 0.001 and parse_filter("lr==2").op == "="
    q = parse_search("lr>=0.01 tag:baseline state:running owner:alice resnet 'two words'")
    assert (q.tags, q.states, q.owner, q.text) == (("baseline",), (JobState.RUNNING,), "alice", "resnet two words")
    q = parse_search("since:2026-12-01 until:1796083300 env:torch dataset:digits sort:-param:lr")
    assert (q.since, q.until, q.environment, q.dataset) == (1796083200.0, 1796083300.0, "torch", "digits")
    assert (q.sort.column, q.sort.param, q.sort.descending) == ("param", "lr", True)


def test_every_rank_launches_with_the_params_filled_in(db: Database, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The launch the executors (local and ray) start: the same substitution as run --local's."""
    from modelyard.config import Settings
    from modelyard.jobs.nodes import NodeSlice
    from modelyard.scheduler.launch import LaunchContext, build_launch

    alice = U.create_user(db, "alice")[0]
    job = J.create_job(db, user=alice, snapshot_key=None, spec=JobSpec(
        command="python train.py --lr {lr} --opt={opt} {{lr}} ${HOME}", params={"lr": 0.01, "opt": "adam"}, nodes=2))
    slices = (NodeSlice("node-a", (), (0,)), NodeSlice("node-b", (), (1,)))
    _, attempt = J.place(db, job.id, token="tok", executor="local", slices=slices)
    ctx = LaunchContext(settings=Settings.from_env({"MODELYARD_HOME": str(tmp_path)}), server_url="http://s")
    for spec in build_launch(ctx, job, attempt, "tok").specs:
        assert spec.argv == ["/bin/sh", "-c", "python train.py --lr 0.01 --opt=adam {lr} ${HOME}"]
        assert spec.env["MODELYARD_PARAMS"] == '{"lr":0.01,"opt":"adam"}'
