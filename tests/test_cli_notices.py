"""`notices`, `profile`, `notify show|set`, `user create --email` and `submit --webhook-event` against a
real server subprocess; one job really runs (and fails) on the local executor."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from serverproc import ServerProc, cli, start_server

from conftest import wait_for

PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("server") / "home") as proc:
        yield proc


def _json(server: ServerProc, *args: str, cwd: Path | None = None) -> object:
    head, sep, tail = list(args), [], []
    if "--" in head:  # --json goes before a submit's command
        i = head.index("--")
        head, sep, tail = head[:i], ["--"], head[i + 1:]
    done = cli([*head, "--json", *sep, *tail], server.env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_failed_job_is_in_notices_until_marked_read(server: ServerProc, tmp_path: Path) -> None:
    chosen = _json(server, "notify", "set", "started", "notice")
    assert chosen["started"] == ["notice"] and chosen["failed"] == ["notice", "email", "webhook"]
    job = _json(server, "submit", "--name", "breaks", "--webhook-event", "failed", "--", PY, "-c",
                "raise SystemExit(2)", cwd=tmp_path)
    assert job["webhook_events"] == ["failed"]
    server.client().wait_job(job["id"], timeout=60)
    listing = wait_for(lambda: (got := _json(server, "notices", "--unread"))["unread"] == 2 and got, 10,
                       what="two notices")
    assert [n["event"] for n in listing["notices"]] == ["failed", "started"]
    assert listing["notices"][0]["title"] == f"Job #{job['id']} breaks failed"
    done = cli(["notices", "--mark-read"], server.env)
    assert done.returncode == 0 and "breaks failed" in done.stdout and "2 unread (now marked read)" in done.stderr
    assert _json(server, "notices", "--unread") == {"notices": [], "unread": 0}


def test_emails_are_set_by_their_user_or_an_admin(server: ServerProc) -> None:
    made = _json(server, "user", "create", "ann", "--no-isolation", "--email", "ann@example.com")
    assert made["user"]["name"] == "ann"
    assert _json(server, "profile", "--user", "ann")["email"] == "ann@example.com"
    ann = {**server.env, "MODELYARD_TOKEN": made["token"]}
    done = cli(["profile", "--email", "ann@corp.example"], ann)
    assert done.returncode == 0 and "ann@corp.example" in done.stdout and "sends no email" in done.stdout
    done = cli(["profile", "--user", "local", "--email", "ann@corp.example"], ann)
    assert done.returncode != 0 and "only an admin" in done.stderr and "Traceback" not in done.stderr
    done = cli(["profile", "--email", "not an address"], ann)
    assert done.returncode != 0 and "not an email address" in done.stderr
    done = cli(["notify", "set", "failed", "sms"], ann)
    assert done.returncode != 0 and "unknown channel 'sms'" in done.stderr
    done = cli(["notify", "show"], ann)
    assert done.returncode == 0 and "timed_out" in done.stdout
    done = cli(["submit", "--webhook-event", "exploded", "--", "true"], ann)
    assert done.returncode != 0 and "exploded" in done.stderr and "Traceback" not in done.stderr
