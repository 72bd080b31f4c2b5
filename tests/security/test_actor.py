"""Who did what: submit, stop, restart and clone record the user who asked (``events.actor``),
the API gives it, the job page's timeline and ``modelyard show`` print it; the platform's own
changes carry none. On SQLite and PostgreSQL (migration 0009 adds the column)."""
from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from inproc import InProc, in_process
from rich.console import Console

from modelyard.cli.output import events_table
from modelyard.server.web.pages import job_data
from modelyard.server.web.render import render
from modelyard.db.users import user_for_token


@pytest.fixture
def api(tmp_path: Any, database_url: str) -> Iterator[InProc]:
    with in_process(tmp_path / "home", database_url) as ip:
        yield ip


def events(api: InProc, job_id: int) -> list[dict[str, Any]]:
    r = api.client.get(f"/api/v1/jobs/{job_id}/events", headers=api.auth(api.admin))
    assert r.status_code == 200, r.text
    return r.json()["events"]


def test_stop_restart_and_clone_record_who_asked(api: InProc) -> None:
    alice = api.new_user("alice")
    job = api.client.post("/api/v1/jobs", json={"spec": {"command": ["true"]}}, headers=api.auth(alice)).json()
    # an admin stops alice's job; alice restarts it, then clones it
    assert api.client.post(f"/api/v1/jobs/{job['id']}/stop", headers=api.auth(api.admin)).status_code == 200
    assert api.client.post(f"/api/v1/jobs/{job['id']}/restart", headers=api.auth(alice)).status_code == 200
    clone = api.client.post(f"/api/v1/jobs/{job['id']}/clone", json={}, headers=api.auth(alice)).json()
    got = [(e["to"], e["reason"], e["actor"]) for e in events(api, job["id"])]
    assert got == [("queued", "submitted", "alice"), ("stopped", "stopped by user", "local"),
                   ("queued", "restarted by user", "alice")]
    assert [(e["reason"], e["actor"]) for e in events(api, clone["id"])] == [(f"cloned from job {job['id']}", "alice")]


def test_the_platforms_own_changes_have_no_actor(api: InProc) -> None:
    from modelyard.db import jobs as store_jobs

    job = api.client.post("/api/v1/jobs", json={"spec": {"command": ["true"]}}, headers=api.auth(api.admin)).json()
    assert store_jobs.place(api.platform.db, job["id"], gpus=[], token="t", executor="local") is not None
    placed = events(api, job["id"])[-1]
    assert placed["reason"] == "placed" and placed["actor"] is None


def test_the_job_page_and_the_cli_show_the_actor(api: InProc) -> None:
    bob = api.new_user("bob")
    job = api.client.post("/api/v1/jobs", json={"spec": {"command": ["true"]}}, headers=api.auth(bob)).json()
    api.client.post(f"/api/v1/jobs/{job['id']}/stop", headers=api.auth(api.admin))
    admin = user_for_token(api.platform.db, api.admin)
    assert admin is not None
    html = render("_job_live.html", request=None, me=None, events_after=None,
                  **job_data(api.platform, admin, job["id"]))
    assert 'by <span class="actor">local</span>' in html and 'by <span class="actor">bob</span>' in html
    out = io.StringIO()
    Console(file=out, width=200).print(events_table(events(api, job["id"])))
    rows = [line for line in out.getvalue().splitlines() if "stopped by user" in line]
    assert len(rows) == 1 and rows[0].rstrip().endswith("local"), out.getvalue()
