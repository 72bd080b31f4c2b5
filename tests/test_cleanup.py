"""Removing jobs, retention, the log moved to the artifact store, and the disk page's data: in-process.

The real app over a fresh SQLite home through FastAPI's TestClient (no socket, no
lifespan: the scheduler never runs); attempts are placed and fed reports through the
db's own transitions (``place``, ``apply_report``), as a supervisor's would.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from modelyard.artifacts import logarchive
from modelyard.artifacts.keys import (
    attempt_output_prefix, final_prefix, job_prefix, log_archive_key, log_key, output_prefix, snapshot_key,
)
from modelyard.config import Settings
from modelyard.errors import ModelyardError
from modelyard.executors.base import Found, Recovery
from modelyard.executors.capacity import detect_capacity
from modelyard.scheduler.launch import run_dir_name
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform
from modelyard.db import jobs as store_jobs
from modelyard.db import reports
from modelyard.db.schema import jobs, log_lines, metric_chunks, removals, system_metrics


class NoCommands:
    """An executor that starts nothing: these tests feed the attempts' reports themselves."""

    name = "local"

    def __init__(self) -> None:
        self._capacity = detect_capacity("gpus=0,cpus=4,memory=8G")

    def capacity(self):  # type: ignore[no-untyped-def]
        return self._capacity

    def recover(self, attempts):  # type: ignore[no-untyped-def]
        return [Recovery(a, Found.LOST, "no commands here") for a in attempts]

    def start(self, launch):  # type: ignore[no-untyped-def]
        raise RuntimeError("this executor runs nothing")

    def cancel(self, attempt) -> None:  # type: ignore[no-untyped-def]
        pass

    def kill(self, attempt) -> bool:  # type: ignore[no-untyped-def]
        return True

    def alive(self, attempt):  # type: ignore[no-untyped-def]
        return None

    def close(self) -> None:
        pass


@dataclass
class App:
    client: TestClient
    platform: Platform
    admin: str
    alice: str
    bob: str

    def h(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


def _app(home: Path, **env: str) -> tuple[TestClient, Platform, str]:
    settings = Settings.from_env({"MODELYARD_HOME": str(home), "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", **env})
    platform = Platform(settings, server_url="http://127.0.0.1:1", executor=NoCommands())  # type: ignore[arg-type]
    admin = ensure_local_user(platform, home)
    return TestClient(create_app(platform), raise_server_exceptions=False), platform, admin


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    client, platform, admin = _app(tmp_path_factory.mktemp("cleanup") / "home")
    tokens = []
    for name in ("alice", "bob"):
        r = client.post("/api/v1/users", json={"name": name, "no_isolation": True}, headers={"Authorization": f"Bearer {admin}"})
        tokens.append(r.json()["token"])
    yield App(client, platform, admin, *tokens)
    client.close()
    platform.close()


def _submit(a: App, token: str, snapshot: str | None = None) -> dict[str, Any]:
    r = a.client.post("/api/v1/jobs", headers=a.h(token), json={"spec": {"command": ["python", "t.py"]},
                                                              "snapshot": snapshot})
    assert r.status_code == 201, r.text
    return r.json()


def _run(p: Platform, job_id: int, *, lines: int = 5, exit_code: int = 0, ranks: int = 1) -> Any:
    """Place the job, report ``lines`` log lines, a metric and a sample, then its end; returns the attempt."""
    placed = store_jobs.place(p.db, job_id, token=f"t{job_id}", executor="local")
    assert placed is not None
    attempt = placed[1]
    logs = [[float(i), "stdout" if i % 2 else "stderr", f"line {i}"] for i in range(lines)]
    reports.apply_report(p.db, attempt, {"seq": 1, "logs": logs, "events": [{"type": "started"}],
                                         "metrics": [["loss", 0.5, 1, None, 1.0]],
                                         "system": [{"t": 1.0, "cpu_percent": 5.0}]})
    reports.apply_report(p.db, attempt, {"seq": 2, "events": [
        {"type": "exited", "exit_code": exit_code, "reason": "exit_zero" if exit_code == 0 else "exit_nonzero"}]})
    return store_jobs.attempt_by_number(p.db, job_id, attempt.number)


def _count(p: Platform, table: sa.Table, *cond: Any) -> int:
    with p.db.read() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*cond)).scalar_one()


def test_a_job_that_may_still_run_is_not_removed(app: App) -> None:
    job = _submit(app, app.alice)
    r = app.client.delete(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice))
    assert r.status_code == 409 and "queued: stop it first" in r.json()["error"]["message"], r.text
    store_jobs.place(app.platform.db, job["id"], token="x", executor="local")
    r = app.client.delete(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice))
    assert r.status_code == 409 and "starting: stop it first" in r.json()["error"]["message"], r.text
    assert app.client.get(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice)).status_code == 200


def test_rm_removes_everything_of_a_job_and_records_it(app: App) -> None:
    p = app.platform
    job = _submit(app, app.alice)
    a = _run(p, job["id"])
    p.storage.put_bytes(b"w" * 100, f"{attempt_output_prefix(job['id'], 1)}/ckpt.bin")
    p.storage.put_bytes(b"m" * 10, f"{final_prefix(job['id'], 1)}/model.bin")
    p.storage.put_bytes(b"log", log_key(job["id"], 1))
    run_dir = p.settings.runs_dir / run_dir_name(job["id"], 1)
    (run_dir / "output").mkdir(parents=True)
    (run_dir / "output" / "kept.bin").write_bytes(b"k" * 50)  # kept after a failed upload
    assert app.client.delete(f"/api/v1/jobs/{job['id']}", headers=app.h(app.bob)).status_code == 404

    r = app.client.delete(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice))
    assert r.status_code == 200, r.text
    removed = {x["what"]: x["bytes"] for x in r.json()["removed"]}
    assert removed["outputs"] == 100 and removed["final"] == 10 and removed["run_folders"] == 50
    assert removed["logs"] > 0 and removed["metrics"] > 0 and "job" in removed
    assert app.client.get(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice)).status_code == 404
    assert p.storage.list(job_prefix(job["id"])) == [] and not run_dir.exists()
    assert _count(p, log_lines, log_lines.c.attempt_id == a.id) == 0
    assert _count(p, metric_chunks, metric_chunks.c.job_id == job["id"]) == 0
    assert _count(p, system_metrics, system_metrics.c.job_id == job["id"]) == 0
    assert _count(p, jobs, jobs.c.id == job["id"]) == 0
    with p.db.read() as conn:
        rows = conn.execute(sa.select(removals).where(removals.c.job_id == job["id"])).all()
    assert {r.what for r in rows} >= {"outputs", "final", "logs", "metrics", "run_folders", "job"}
    assert {(r.reason, r.actor) for r in rows} == {("rm", "alice")}
    listed = app.client.get("/api/v1/admin/removals", headers=app.h(app.admin)).json()["removals"]
    assert any(x["job_id"] == job["id"] and x["what"] == "outputs" and x["bytes"] == 100 for x in listed)
    assert app.client.get("/api/v1/admin/removals", headers=app.h(app.alice)).status_code == 403


def test_keep_final_keeps_the_model_and_the_row_marked_removed(app: App) -> None:
    p = app.platform
    job = _submit(app, app.alice)
    _run(p, job["id"])
    p.storage.put_bytes(b"w" * 100, f"{attempt_output_prefix(job['id'], 1)}/ckpt.bin")
    p.storage.put_bytes(b"m" * 10, f"{final_prefix(job['id'], 1)}/model.bin")
    p.storage.put_bytes(b"old", f"{output_prefix(job['id'])}/final/legacy.bin")
    r = app.client.delete(f"/api/v1/jobs/{job['id']}?keep_final=true", headers=app.h(app.alice))
    assert r.status_code == 200 and r.json()["kept_final"], r.text
    left = sorted(e.path for e in p.storage.list(job_prefix(job["id"])))
    assert left == ["attempts/1/outputs/final/model.bin", "outputs/final/legacy.bin"]
    shown = app.client.get(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice)).json()
    assert shown["removed_at"] is not None
    again = app.client.post(f"/api/v1/jobs/{job['id']}/restart", headers=app.h(app.alice))
    assert again.status_code == 409 and "removed" in again.json()["error"]["message"]
    # and the row goes with a plain rm later
    assert app.client.delete(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice)).status_code == 200
    assert p.storage.list(job_prefix(job["id"])) == []


def test_a_snapshot_another_job_names_is_kept(app: App) -> None:
    p = app.platform
    key = snapshot_key("ab" * 32)
    p.storage.put_bytes(b"code", key)
    first, second = (_submit(app, app.alice, snapshot=key) for _ in range(2))
    for j in (first, second):
        _run(p, j["id"])
    assert app.client.delete(f"/api/v1/jobs/{first['id']}", headers=app.h(app.alice)).status_code == 200
    assert p.storage.exists(key)  # the second job's code too
    r = app.client.delete(f"/api/v1/jobs/{second['id']}", headers=app.h(app.alice))
    assert {x["what"] for x in r.json()["removed"]} >= {"snapshot"} and not p.storage.exists(key)


def test_an_ended_attempts_log_leaves_the_db_and_reads_the_same(app: App) -> None:
    p = app.platform
    job = _submit(app, app.alice)
    a = _run(p, job["id"], lines=2500)
    p.storage.put_bytes(b"raw log", log_key(job["id"], 1))
    url = f"/api/v1/jobs/{job['id']}/logs"
    before = [app.client.get(url, params={"offset": o, "limit": 700}, headers=app.h(app.alice)).json()
              for o in (0, 999, 1000, 2400, 2500)]
    assert p.cleanup.archive_logs() >= 1
    assert _count(p, log_lines, log_lines.c.attempt_id == a.id) == 0
    assert p.storage.exists(log_archive_key(job["id"], 1)) and not p.storage.exists(log_key(job["id"], 1))
    after = [app.client.get(url, params={"offset": o, "limit": 700}, headers=app.h(app.alice)).json()
             for o in (0, 999, 1000, 2400, 2500)]
    assert after == before
    assert [x["n"] for x in after[3]["lines"]] == list(range(2400, 2500)) and after[3]["done"]
    whole = app.client.get(url, params={"limit": 10000}, headers=app.h(app.alice)).json()
    assert [x["text"] for x in whole["lines"]] == [f"line {i}" for i in range(2500)]
    assert whole["lines"][1]["stream"] == "stdout" and whole["lines"][0]["t"] == 0.0


def test_a_page_read_while_the_archiver_moves_the_lines_still_has_them(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The archiver runs between the reader's look for db rows and its read of them: the reader
    must find the lines in the archive, not an empty page (a one-shot reader would see no log)."""
    from modelyard.services import cleanup as cleanup_module

    p = app.platform
    looked = cleanup_module.store_removals.has_log_rows
    monkeypatch.setattr(p.cleanup, "_archive_scan_at", p.cleanup._archive_scan_at)  # put back after

    def look_then_archive(db: Any, attempt_id: int) -> bool:
        there = looked(db, attempt_id)
        p.cleanup._archive_scan_at = -float("inf")  # a whole scan
        assert p.cleanup.archive_logs() >= 1 and not looked(db, attempt_id)
        return there

    monkeypatch.setattr(cleanup_module.store_removals, "has_log_rows", look_then_archive)
    for params in ({"limit": 100}, {"limit": 100, "node": 0}):
        job = _submit(app, app.alice)
        _run(p, job["id"], lines=30)
        got = app.client.get(f"/api/v1/jobs/{job['id']}/logs", params=params, headers=app.h(app.alice)).json()
        assert [x["text"] for x in got["lines"]] == [f"line {i}" for i in range(30)] and got["done"], params


def test_an_archive_pages_by_node_rank_as_the_db_does(tmp_path: Path) -> None:
    from modelyard.artifacts.store import ArtifactStore

    store = ArtifactStore((tmp_path / "store").as_uri())
    rows = [(n, float(n), 0, n % 3 == 0, f"l{n}") for n in range(3500)]
    logarchive.write_archive(store, 5, 1, [(n, t, s, int(r), x) for n, t, s, r, x in rows])
    page = logarchive.read_archive(store, 5, 1, offset=1000, limit=10, node=1, total=3500)
    assert [x["n"] for x in page.lines] == list(range(1002, 1032, 3)) and page.next_offset == 1030
    tail = logarchive.read_archive(store, 5, 1, offset=3490, limit=10, node=1, total=3500)
    assert [x["n"] for x in tail.lines] == [3492, 3495, 3498] and tail.next_offset == 3500


def test_retention_removes_outputs_not_final_once(tmp_path: Path) -> None:
    client, p, admin = _app(tmp_path / "home", MODELYARD_RETENTION="outputs=1s,metrics=1s")
    try:
        job = client.post("/api/v1/jobs", headers={"Authorization": f"Bearer {admin}"},
                          json={"spec": {"command": ["true"]}}).json()
        _run(p, job["id"])
        p.storage.put_bytes(b"w" * 100, f"{attempt_output_prefix(job['id'], 1)}/ckpt.bin")
        p.storage.put_bytes(b"m", f"{final_prefix(job['id'], 1)}/model.bin")
        ended = store_jobs.get_job(p.db, job["id"]).ended_at
        assert p.cleanup.apply_retention(now=ended + 0.5) == 0  # not old enough
        assert p.cleanup.apply_retention(now=ended + 2) == 2  # outputs, metrics
        assert [e.path for e in p.storage.list(job_prefix(job["id"]))] == ["attempts/1/outputs/final/model.bin"]
        assert p.cleanup.apply_retention(now=ended + 3) == 0  # done once
        page = client.get("/api/v1/admin/removals?reason=retention", headers={"Authorization": f"Bearer {admin}"}).json()
        assert {(r["what"], r["bytes"], r["actor"]) for r in page["removals"]} >= {("outputs", 100, None)}
        assert _count(p, metric_chunks, metric_chunks.c.job_id == job["id"]) == 0
    finally:
        client.close()
        p.close()


@pytest.mark.parametrize("value", ["outputs", "outputz=30d", "outputs=soon", "logs=0s"])
def test_a_bad_retention_fails_naming_the_variable(value: str) -> None:
    with pytest.raises(ModelyardError) as e:
        Settings.from_env({"MODELYARD_HOME": "/tmp/x", "MODELYARD_RETENTION": value})
    assert e.value.field == "MODELYARD_RETENTION"


def test_the_disk_is_shown_to_admins_only_with_each_jobs_bytes(app: App) -> None:
    p = app.platform
    job = _submit(app, app.bob)
    _run(p, job["id"])
    p.storage.put_bytes(b"x" * 12345, f"{attempt_output_prefix(job['id'], 1)}/big.bin")
    assert app.client.get("/api/v1/admin/disk", headers=app.h(app.bob)).status_code == 403
    d = app.client.get("/api/v1/admin/disk?refresh=true", headers=app.h(app.admin)).json()
    mine = [j for j in d["jobs"] if j["id"] == job["id"]]
    assert mine == [{"id": job["id"], "owner": "bob", "bytes": 12345}]
    assert any(u["user"] == "bob" and u["bytes"] >= 12345 for u in d["users"])
    assert d["database_bytes"] > 0 and d["jobs"] == sorted(d["jobs"], key=lambda j: -j["bytes"])
    p.storage.put_bytes(b"y", f"{attempt_output_prefix(job['id'], 1)}/more.bin")
    cached = app.client.get("/api/v1/admin/disk", headers=app.h(app.admin)).json()
    assert [j for j in cached["jobs"] if j["id"] == job["id"]][0]["bytes"] == 12345  # measured at most every 30 s


def test_a_new_job_never_takes_a_removed_jobs_id(app: App) -> None:
    job = _submit(app, app.alice)
    _run(app.platform, job["id"])
    assert app.client.delete(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice)).status_code == 200
    assert _submit(app, app.alice)["id"] > job["id"]  # SQLite would reuse the largest id, newly free


def test_events_after_a_removal_of_the_newest_job_come_after_every_cursor(app: App) -> None:
    """Event ids are cursors (queue view, event streams): the removed job's were the newest, and a
    reader whose cursor stands at them must still see every event that follows."""
    job = _submit(app, app.alice)
    _run(app.platform, job["id"])
    cursor = store_jobs.last_event_id(app.platform.db)
    assert app.client.delete(f"/api/v1/jobs/{job['id']}", headers=app.h(app.alice)).status_code == 200
    later = _submit(app, app.alice)
    seen = store_jobs.events_since(app.platform.db, cursor)
    assert [e.job_id for e in seen] == [later["id"]], "an event id given twice hides the event from cursors"


def test_retention_of_metrics_empties_a_chart_already_read(tmp_path: Path) -> None:
    client, p, admin = _app(tmp_path / "home", MODELYARD_RETENTION="metrics=1s")
    try:
        h = {"Authorization": f"Bearer {admin}"}
        job = client.post("/api/v1/jobs", headers=h, json={"spec": {"command": ["true"]}}).json()
        _run(p, job["id"])
        assert client.get(f"/api/v1/jobs/{job['id']}/metrics", headers=h).json()["loss"]  # cached now
        p.cleanup.apply_retention(now=store_jobs.get_job(p.db, job["id"]).ended_at + 2)
        assert client.get(f"/api/v1/jobs/{job['id']}/metrics", headers=h).json() == {}
    finally:
        client.close()
        p.close()


def test_rm_archive_and_retention_on_both_databases(tmp_path: Path, database_url: str) -> None:
    client, p, admin = _app(tmp_path / "home", MODELYARD_DATABASE_URL=database_url, MODELYARD_RETENTION="jobs=1s")
    try:
        h = {"Authorization": f"Bearer {admin}"}
        made = [client.post("/api/v1/jobs", headers=h, json={"spec": {"command": ["true"]}}).json() for _ in range(3)]
        for j in made:
            _run(p, j["id"], lines=1200)
        p.storage.put_bytes(b"m", f"{final_prefix(made[2]['id'], 1)}/model.bin")
        assert p.cleanup.archive_logs() == 3
        page = client.get(f"/api/v1/jobs/{made[0]['id']}/logs", params={"offset": 1100}, headers=h).json()
        assert [x["n"] for x in page["lines"]] == list(range(1100, 1200)) and page["done"]
        assert client.delete(f"/api/v1/jobs/{made[0]['id']}", headers=h).status_code == 200
        ended = max(store_jobs.get_job(p.db, j["id"]).ended_at for j in made[1:])
        assert p.cleanup.apply_retention(now=ended + 2) == 2
        assert client.get(f"/api/v1/jobs/{made[1]['id']}", headers=h).status_code == 404
        kept = client.get(f"/api/v1/jobs/{made[2]['id']}", headers=h).json()  # its final/ is kept, so is its row
        assert kept["removed_at"] is not None
        assert [e.path for e in p.storage.list(job_prefix(made[2]["id"]))] == ["attempts/1/outputs/final/model.bin"]
        assert _submit_id(client, h) > made[2]["id"]
    finally:
        client.close()
        p.close()


def _submit_id(client: TestClient, h: dict[str, str]) -> int:
    return client.post("/api/v1/jobs", headers=h, json={"spec": {"command": ["true"]}}).json()["id"]


def test_a_log_removed_by_retention_reads_as_ended_not_as_pending(tmp_path: Path) -> None:
    client, p, admin = _app(tmp_path / "home", MODELYARD_RETENTION="logs=1s")
    try:
        h = {"Authorization": f"Bearer {admin}"}
        job = client.post("/api/v1/jobs", headers=h, json={"spec": {"command": ["true"]}}).json()
        _run(p, job["id"], lines=30)
        p.cleanup.archive_logs()
        assert p.cleanup.apply_retention(now=store_jobs.get_job(p.db, job["id"]).ended_at + 2) == 1
        page = client.get(f"/api/v1/jobs/{job['id']}/logs", headers=h).json()
        assert page["lines"] == [] and page["done"] and page["next_offset"] == 30  # `logs -f` ends
        assert not p.storage.list(job_prefix(job["id"]))
    finally:
        client.close()
        p.close()
