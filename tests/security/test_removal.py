"""Removal cannot reach past its owner: another user's code snapshot (shared by content) stays when one
removes one's own job that sent the same code, and no user, an admin neither, removes a job that may
still run (the claim is a compare-and-set on its state, so a restart cannot slip in between)."""
from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from inproc import InProc, in_process

from modelyard.jobs.states import TerminationReason
from modelyard.db import jobs as store_jobs


@pytest.fixture
def ip(tmp_path: Path) -> Iterator[InProc]:
    with in_process(tmp_path / "home") as x:
        yield x


def _code() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"print('hi')\n"
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ended_job(ip: InProc, token: str, snapshot: str) -> int:
    r = ip.client.post("/api/v1/jobs", headers=ip.auth(token),
                       json={"spec": {"command": ["python", "train.py"]}, "snapshot": snapshot})
    assert r.status_code == 201, r.text
    placed = store_jobs.place(ip.platform.db, r.json()["id"], token=f"t{r.json()['id']}", executor="local")
    assert placed is not None
    store_jobs.end_attempt(ip.platform.db, placed[1], TerminationReason.EXIT_ZERO, exit_code=0)
    return int(r.json()["id"])


def test_removing_ones_job_keeps_the_code_another_users_job_shares(ip: InProc) -> None:
    alice, bob = ip.new_user("alice"), ip.new_user("bob")
    keys = [ip.client.post("/api/v1/snapshots", content=_code(), headers=ip.auth(t)).json()["key"] for t in (alice, bob)]
    assert keys[0] == keys[1]  # the same content: one snapshot
    hers, his = _ended_job(ip, alice, keys[0]), _ended_job(ip, bob, keys[1])
    r = ip.client.delete(f"/api/v1/jobs/{his}", headers=ip.auth(bob))
    assert r.status_code == 200 and "snapshot" not in {x["what"] for x in r.json()["removed"]}
    assert ip.platform.storage.exists(keys[0])
    assert ip.client.post(f"/api/v1/jobs/{hers}/restart", headers=ip.auth(alice)).status_code == 200


def test_not_even_an_admin_removes_a_job_that_may_still_run(ip: InProc) -> None:
    key = ip.client.post("/api/v1/snapshots", content=_code(), headers=ip.auth(ip.admin)).json()["key"]
    job = _ended_job(ip, ip.admin, key)
    assert ip.client.post(f"/api/v1/jobs/{job}/restart", headers=ip.auth(ip.admin)).status_code == 200
    for keep in ("false", "true"):
        r = ip.client.delete(f"/api/v1/jobs/{job}?keep_final={keep}", headers=ip.auth(ip.admin))
        assert r.status_code == 409 and r.json()["error"]["message"] == f"job {job} is queued: stop it first"
    assert ip.platform.storage.exists(key)
    assert ip.client.get(f"/api/v1/jobs/{job}", headers=ip.auth(ip.admin)).json()["removed_at"] is None
