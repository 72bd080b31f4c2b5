"""A node rank is what the attempt was placed with, and a node's log lines are their owner's only.

A supervisor's token reports for its own attempt; a rank the attempt does not have (past its nodes,
negative, not an integer, any rank on a one-node job) is refused naming ``rank`` and stores nothing,
and reading logs by node is held to the job's owner (another user gets 404, as for any of its logs).
The fixtures and the two-node placement are the multi-node tests' (tests/test_multinode_ranks.py)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from test_multinode_ranks import NODES, alice, api, db, placed  # noqa: F401 (fixtures)
from modelyard.errors import ModelyardError
from modelyard.jobs import JobSpec
from modelyard.server.platform import Platform
from modelyard.db import Database
from modelyard.db import jobs as J
from modelyard.db import ranks as RK
from modelyard.db import reports as R
from modelyard.db import users as U


@pytest.mark.parametrize("rank", [2, 64, -1, "1", True])
def test_a_rank_the_attempt_does_not_have_is_refused_naming_rank(db: Database, alice: U.User, rank: object) -> None:
    a = placed(db, alice)
    with pytest.raises(ModelyardError) as info:
        R.apply_report(db, a, {"seq": 2, "rank": rank, "logs": [[2.0, "stdout", "who?"]]})
    assert info.value.field == "rank" and info.value.http_status == 422
    assert R.read_logs(db, a.id).lines == []


def test_a_rank_on_a_one_node_job_is_refused(db: Database, alice: U.User) -> None:
    job = J.create_job(db, user=alice, spec=JobSpec(command=["true"]), snapshot_key=None)
    a = J.place(db, job.id, token="t", executor="local")[1]
    with pytest.raises(ModelyardError, match="no rank 1") as info:
        R.apply_report(db, a, {"seq": 1, "rank": 1})
    assert info.value.field == "rank"
    assert RK.ranks_of(db, a.id) == []


def test_api_takes_rank_reports_and_serves_logs_by_node_to_their_owner_only(
        api: tuple[TestClient, Platform, str]) -> None:
    client, p, admin = api
    alice = U.create_user(p.db, "alice2")[0]
    _, bob_token = U.create_user(p.db, "bob2")
    job = J.create_job(p.db, user=alice, spec=JobSpec(command=["true"], nodes=2), snapshot_key=None)
    _, a = J.place(p.db, job.id, token="rank-token", executor="local", slices=NODES)
    report = f"/api/v1/attempts/{a.id}/report"
    auth = {"Authorization": "Bearer rank-token"}
    assert client.post(report, json={"seq": 1, "logs": [[1.0, "stdout", "from 0"]]}, headers=auth).status_code == 200
    r = client.post(report, json={"seq": 1, "rank": 1, "logs": [[1.0, "stdout", "from 1"]]}, headers=auth)
    assert r.status_code == 200 and r.json() == {"stored": True, "stop": False}
    bad = client.post(report, json={"seq": 2, "rank": 2}, headers=auth)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "rank"
    as_admin = {"Authorization": f"Bearer {admin}"}
    page = client.get(f"/api/v1/jobs/{job.id}/logs", params={"node": 1}, headers=as_admin).json()
    assert [(x["node"], x["text"]) for x in page["lines"]] == [(1, "from 1")] and page["next_offset"] == 2
    every = client.get(f"/api/v1/jobs/{job.id}/logs", headers=as_admin).json()["lines"]
    assert [(x["n"], x["node"]) for x in every] == [(0, 0), (1, 1)]
    assert client.get(f"/api/v1/jobs/{job.id}/logs", params={"node": 64}, headers=as_admin).status_code == 422
    as_bob = {"Authorization": f"Bearer {bob_token}"}
    for path in (f"/api/v1/jobs/{job.id}/logs", f"/api/v1/jobs/{job.id}/logs/stream"):
        denied = client.get(path, params={"node": 1}, headers=as_bob)
        assert denied.status_code == 404 and "from 1" not in denied.text
