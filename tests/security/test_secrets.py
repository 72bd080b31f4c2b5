"""Secrets: the job's command gets each value; no API answer, page, stream, webhook or database row shows it.

A real server subprocess with real supervisors, a real webhook receiver on
127.0.0.1 and real databases (SQLite's file bytes, PostgreSQL's rows). Each job
prints the sha256 of its secrets (proof it saw them) and the values themselves
(which the supervisor must mask before they are stored).
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets as pysecrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from conftest import wait_for
from modelyard.artifacts.keys import attempt_prefix, log_archive_key
from servers import ServerProcess, ui_sign_in

PY = sys.executable
BASE_ENV = {"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1/32"}
# prints "sha NAME <sha256 of $NAME>" for each name given, then the values themselves
SHOW = ("import hashlib, os, sys\n"
        "for n in sys.argv[1:]:\n"
        "    print('sha', n, hashlib.sha256(os.environ[n].encode()).hexdigest())\n"
        "print('leak', *[os.environ[n] for n in sys.argv[1:]], flush=True)\n")


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_value() -> str:
    return "s3cr3t-" + pysecrets.token_hex(16)


class Receiver:
    """A real webhook receiver on 127.0.0.1 that keeps every body it is POSTed."""

    def __init__(self) -> None:
        bodies: list[bytes] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.bodies = bodies
        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.http.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("secrets") / "home", env=BASE_ENV).start()
    yield srv
    srv.stop()


def run_job(c: httpx.Client, names: list[str], secrets: dict[str, str | None], **spec: object) -> dict:
    r = c.post("/jobs", json={"spec": {"command": [PY, "-c", SHOW, *names], "secrets": secrets, **spec}})
    assert r.status_code == 201, r.text
    return wait_ended(c, r.json()["id"])


def wait_ended(c: httpx.Client, job_id: int, attempt: int = 1) -> dict:
    def ended() -> dict | None:
        job = c.get(f"/jobs/{job_id}").json()
        return job if job["state"] in ("succeeded", "failed") and job["attempt"] >= attempt else None

    job = wait_for(ended, 60, what=f"job {job_id} attempt {attempt} to end")
    assert job["state"] == "succeeded", job
    return job


def log_text(c: httpx.Client, job_id: int, attempt: int | None = None) -> str:
    params = {"attempt": attempt} if attempt else {}
    return "\n".join(line["text"] for line in c.get(f"/jobs/{job_id}/logs", params=params).json()["lines"])


def sse_until(c: httpx.Client, path: str, *, stop: str) -> str:
    """A server-sent event stream's text, read until a line holding ``stop``."""
    seen: list[str] = []
    with c.stream("GET", path, timeout=30) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            seen.append(line)
            if stop in line:
                break
    return "\n".join(seen)


def everything_shown(srv: ServerProcess, c: httpx.Client, job_id: int, last_event: int) -> dict[str, str]:
    """Every job-related GET answer of the API and the web UI, by what was asked."""
    api = [
        "/jobs", "/jobs?all=true", f"/jobs/{job_id}", f"/jobs/{job_id}/events", f"/jobs/{job_id}/logs",
        f"/jobs/{job_id}/logs/size", f"/jobs/{job_id}/metrics", f"/jobs/{job_id}/metrics/window",
        f"/jobs/{job_id}/system-metrics", f"/jobs/{job_id}/outputs", "/queue", f"/metrics/latest?jobs={job_id}",
        "/secrets", "/secrets/STORED_TOK",
    ]
    shown = {p: c.get(p).text for p in api}
    for p, text in shown.items():
        assert '"error"' not in text, (p, text)
    shown["logs/stream"] = sse_until(c, f"/jobs/{job_id}/logs/stream", stop="event: end")
    shown["events/stream"] = sse_until(c, "/events/stream?after=0", stop=f"id: {last_event}")
    with httpx.Client(base_url=srv.url, timeout=30) as ui:
        ui_sign_in(ui, srv.token)  # the UI's session, as a browser gets it
        for page in ("/ui/jobs", "/ui/jobs/rows", f"/ui/jobs/{job_id}", f"/ui/jobs/{job_id}/live"):
            for query in ("", "?format=json"):
                r = ui.get(page + query)
                assert r.status_code == 200, (page, r.text)
                shown[page + query] = r.text
    return shown


def database_text(database_url: str, home: Path) -> bytes:
    """What the database holds: every row of every table, and for SQLite its files' bytes too."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            rows = [repr(tuple(r)) for t in sa.inspect(conn).get_table_names()
                    for r in conn.execute(sa.text(f'SELECT * FROM "{t}"'))]  # names from the schema itself
    finally:
        engine.dispose()
    blob = "\n".join(rows).encode()
    if database_url.startswith("sqlite"):
        for f in home.glob("modelyard.db*"):  # the WAL holds the newest pages
            blob += f.read_bytes()
    return blob


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_job_gets_its_secrets_and_nothing_shows_them(
    dialect: str, receiver: Receiver, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'modelyard.db'}" if dialect == "sqlite" else request.getfixturevalue("pg_url")
    srv = ServerProcess(home, env={**BASE_ENV, "MODELYARD_DATABASE_URL": url}).start()
    stored, inline = new_value(), new_value()
    try:
        with srv.client() as c:
            assert c.put("/secrets/STORED_TOK", json={"value": stored}).status_code == 200
            job = run_job(c, ["INLINE_TOK", "STORED_TOK"], {"INLINE_TOK": inline, "STORED_TOK": None},
                          webhooks=[receiver.url])
            assert job["secrets"] == {"INLINE_TOK": "***", "STORED_TOK": "***"}
            log = log_text(c, job["id"])
            # the command saw both values...
            assert f"sha INLINE_TOK {sha(inline)}" in log and f"sha STORED_TOK {sha(stored)}" in log
            # ...and what it printed of them was masked before it was stored
            assert "leak *** ***" in log
            wait_for(lambda: any(f'"id":{job["id"]},' in b.decode() for b in receiver.bodies), 30, what="webhook")
            hook = next(json.loads(b) for b in receiver.bodies if f'"id":{job["id"]},' in b.decode())
            assert hook["job"]["secrets"] == {"INLINE_TOK": "***", "STORED_TOK": "***"}
            last_event = c.get(f"/jobs/{job['id']}/events").json()["events"][-1]["id"]
            shown = everything_shown(srv, c, job["id"], last_event)
            shown["webhooks"] = b"\n".join(receiver.bodies).decode()
            for what, text in shown.items():
                assert stored not in text and inline not in text, f"a secret value is in {what}"
            assert '"STORED_TOK":"***"' in shown[f"/ui/jobs/{job['id']}?format=json"].replace(" ", "")
            assert "secret STORED_TOK" in shown[f"/ui/jobs/{job['id']}"]
            # the log's one stored copy, once it left the db (the archive replaces the supervisor's log.txt)
            attempt_dir = home / "artifacts" / attempt_prefix(job["id"], 1)
            wait_for(lambda: not (attempt_dir / "log.txt").exists(), 30, what="the log's archive to replace log.txt")
            artifact_log = (home / "artifacts" / log_archive_key(job["id"], 1)).read_text()
            assert "leak *** ***" in artifact_log and stored not in artifact_log and inline not in artifact_log
    finally:
        srv.stop()
    held = database_text(url, home)
    assert b"STORED_TOK" in held  # the rows were read: the name is there, the value is not
    assert stored.encode() not in held and inline.encode() not in held


def test_a_rotated_secret_reaches_the_next_attempt_and_a_clone_keeps_its_secrets(server: ServerProcess) -> None:
    first, second, inline = new_value(), new_value(), new_value()
    with server.client() as c:
        assert c.put("/secrets/ROTATING", json={"value": first}).status_code == 200
        job = run_job(c, ["ROTATING", "KEPT"], {"ROTATING": None, "KEPT": inline})
        assert f"sha ROTATING {sha(first)}" in log_text(c, job["id"])
        assert c.put("/secrets/ROTATING", json={"value": second}).status_code == 200
        assert c.post(f"/jobs/{job['id']}/restart").status_code == 200
        wait_ended(c, job["id"], attempt=2)
        again = log_text(c, job["id"], attempt=2)
        assert f"sha ROTATING {sha(second)}" in again and f"sha KEPT {sha(inline)}" in again
        clone = c.post(f"/jobs/{job['id']}/clone", json={})
        assert clone.status_code == 201, clone.text
        assert clone.json()["secrets"] == {"ROTATING": "***", "KEPT": "***"}
        wait_ended(c, clone.json()["id"])
        cloned = log_text(c, clone.json()["id"])
        assert f"sha KEPT {sha(inline)}" in cloned and f"sha ROTATING {sha(second)}" in cloned
        # removed: the next attempt cannot start, and says which secret is gone
        assert c.delete("/secrets/ROTATING").status_code == 204
        assert c.post(f"/jobs/{job['id']}/restart").status_code == 200
        third = wait_for(lambda: (j := c.get(f"/jobs/{job['id']}").json())["attempt"] == 3
                         and j["state"] == "failed" and j, 60, what="the third attempt to fail")
        assert third["attempts"][-1]["reason"] == "start_failed" and "ROTATING" in third["message"], third


def test_another_user_cannot_see_remove_or_use_a_stored_secret(server: ServerProcess) -> None:
    with server.client() as admin:
        assert admin.put("/secrets/ADMINS_ONLY", json={"value": new_value()}).status_code == 200
        bob_token = admin.post("/users", json={"name": "bob-secrets", "no_isolation": True}).json()["token"]
        with server.client(token=bob_token) as bob:
            assert bob.get("/secrets").json() == {"secrets": []}
            assert bob.get("/secrets/ADMINS_ONLY").status_code == 404
            assert bob.delete("/secrets/ADMINS_ONLY").status_code == 404
            r = bob.post("/jobs", json={"spec": {"command": ["true"], "secrets": {"ADMINS_ONLY": None}}})
            assert r.status_code == 422 and r.json()["error"]["field"] == "secrets"
            assert "ADMINS_ONLY" in r.json()["error"]["message"]
            assert bob.put("/secrets/ADMINS_ONLY", json={"value": "bobs-own"}).status_code == 200
        assert [s["name"] for s in admin.get("/secrets").json()["secrets"]].count("ADMINS_ONLY") == 1
        assert admin.delete("/secrets/ADMINS_ONLY").status_code == 204
        assert admin.get("/secrets/ADMINS_ONLY").status_code == 404


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"secrets": {"MODELYARD_TOKEN": "x" * 8}}, "secrets", "MODELYARD_"),
    ({"secrets": {"1BAD": "x" * 8}}, "secrets", "1BAD"),
    ({"secrets": {"A-B": None}}, "secrets", "A-B"),
    ({"secrets": {"EMPTY": ""}}, "secrets", "empty"),
    ({"secrets": {"NOPE_NOT_STORED": None}}, "secrets", "NOPE_NOT_STORED"),
    ({"secrets": {"SHOWN": "***"}}, "secrets", "shown back"),
    ({"secrets": {"BOTH": "x" * 8}, "env": {"BOTH": "1"}}, "spec", "both env and secrets"),
])
def test_bad_secrets_are_refused_naming_the_field(server: ServerProcess, body: dict, field: str, words: str) -> None:
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": ["true"], **body}})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"].endswith(field) and words in err["message"], err
        assert c.put("/secrets/MODELYARD_X", json={"value": "v" * 8}).json()["error"]["field"] == "name"
        assert c.put("/secrets/OK_NAME", json={"value": ""}).json()["error"]["field"] == "value"


def test_the_cli_stores_from_stdin_lists_names_only_and_submits_with_it(server: ServerProcess, tmp_path: Path) -> None:
    value = new_value()
    env = {**os.environ, "MODELYARD_URL": server.url, "MODELYARD_TOKEN": server.token}

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "modelyard", *args], input=stdin, env=env, capture_output=True, text=True,
                              timeout=60, cwd=server.home)

    stored = cli("secret", "set", "CLI_TOK", stdin=value + "\n")
    assert stored.returncode == 0, stored.stderr
    listed = cli("secret", "ls")
    assert "CLI_TOK" in listed.stdout and value not in listed.stdout + listed.stderr
    sub = cli("submit", "--json", "--workdir", str(tmp_path), "--secret", "CLI_TOK",
              "--secret", "CLI_INLINE=" + value, "--", PY, "-c", SHOW, "CLI_TOK", "CLI_INLINE")
    assert sub.returncode == 0, sub.stderr
    job = json.loads(sub.stdout)
    with server.client() as c:
        wait_ended(c, job["id"])
        assert f"sha CLI_TOK {sha(value)}" in log_text(c, job["id"])  # stdin's newline was not part of it
    shown = cli("show", str(job["id"]))
    assert "CLI_TOK=***" in shown.stdout and "CLI_INLINE=***" in shown.stdout and value not in shown.stdout
    assert cli("secret", "rm", "CLI_TOK").returncode == 0
    assert "CLI_TOK" not in cli("secret", "ls").stdout


def test_the_server_key_is_made_once_readable_by_the_server_only(tmp_path: Path) -> None:
    from modelyard.config import Settings
    from modelyard.secrets import SecretBox

    settings = Settings.from_env({"MODELYARD_HOME": str(tmp_path)})
    token = SecretBox.for_settings(settings).seal("value-1")
    key_file = tmp_path / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_bytes()
    assert SecretBox.for_settings(settings).open(token, what="it") == "value-1" and key_file.read_bytes() == key
    assert "value-1" not in token


def test_modelyard_secret_key_wins_and_rotates(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from modelyard.config import Settings
    from modelyard.errors import ModelyardError
    from modelyard.secrets import SecretBox

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    env = {"MODELYARD_HOME": str(tmp_path)}
    sealed_old = SecretBox.for_settings(Settings.from_env({**env, "MODELYARD_SECRET_KEY": old})).seal("v")
    rotated = SecretBox.for_settings(Settings.from_env({**env, "MODELYARD_SECRET_KEY": f"{new},{old}"}))
    assert rotated.open(sealed_old, what="it") == "v"  # an older key still opens
    assert Fernet(new.encode()).decrypt(rotated.seal("w").encode()) == b"w"  # the first key seals
    assert not (tmp_path / "secret.key").exists()
    with pytest.raises(ModelyardError) as bad:
        SecretBox.for_settings(Settings.from_env({**env, "MODELYARD_SECRET_KEY": "not-a-key"}))
    assert bad.value.field == "MODELYARD_SECRET_KEY"
    with pytest.raises(ModelyardError, match="secret key is not the one"):
        SecretBox.for_settings(Settings.from_env({**env, "MODELYARD_SECRET_KEY": new})).open(sealed_old, what="it")


def test_the_store_keeps_one_sealed_value_per_user_and_name(database_url: str) -> None:
    from modelyard.db import secrets as store_secrets
    from modelyard.db.engine import Database
    from modelyard.db.users import create_user

    db = Database(database_url)
    db.migrate()
    try:
        alice, _ = create_user(db, "alice")
        bob, _ = create_user(db, "bob")
        made = store_secrets.put_secret(db, alice.id, "TOK", "sealed-1", now=100.0)
        again = store_secrets.put_secret(db, alice.id, "TOK", "sealed-2", now=200.0)
        assert (made.created_at, again.created_at, again.updated_at) == (100.0, 100.0, 200.0)
        store_secrets.put_secret(db, bob.id, "TOK", "bobs", now=300.0)
        assert store_secrets.ciphertexts(db, alice.id, ["TOK", "OTHER"]) == {"TOK": "sealed-2"}
        assert store_secrets.ciphertexts(db, bob.id, ["TOK"]) == {"TOK": "bobs"}
        assert [s.name for s in store_secrets.list_secrets(db, alice.id)] == ["TOK"]
        assert store_secrets.delete_secret(db, alice.id, "TOK") and not store_secrets.delete_secret(db, alice.id, "TOK")
        assert store_secrets.get_secret(db, alice.id, "TOK") is None
        assert store_secrets.get_secret(db, bob.id, "TOK") is not None
    finally:
        db.dispose()


def test_a_job_file_lists_secrets_and_flags_add_to_them(tmp_path: Path) -> None:
    from modelyard.cli.options import build_spec, load_job_file, spec_payload

    job_file = tmp_path / "job.yaml"
    job_file.write_text("command: [python, train.py]\nsecrets: [WANDB_API_KEY, RUN_TOKEN=from-file]\n")
    spec = build_spec(load_job_file(job_file), {"secrets": ["RUN_TOKEN=from-flag", "HF_TOKEN"]})
    assert spec_payload(spec)["secrets"] == {"WANDB_API_KEY": None, "RUN_TOKEN": "from-flag", "HF_TOKEN": None}
    assert "from-flag" not in repr(spec) and spec.model_dump()["secrets"]["RUN_TOKEN"] == "***"
    job_file.write_text("command: [python, train.py]\nsecrets: {A: x-value, B: null}\n")
    assert spec_payload(build_spec(load_job_file(job_file), {}))["secrets"] == {"A": "x-value", "B": None}


def test_the_supervisor_masks_values_in_what_the_job_prints(tmp_path: Path) -> None:
    from modelyard.supervisor.output import OutputPump

    value = new_value()
    pump = OutputPump(tmp_path / "log.txt", None, masks=[value, "abc"])  # "abc": too short to mask
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pump.start(os.fdopen(out_r, "rb"), os.fdopen(err_r, "rb"))
    os.write(out_w, f"token={value} abc\n".encode())
    os.write(err_w, f"{value}{value}\n".encode())
    os.close(out_w)
    os.close(err_w)
    assert pump.join(10)
    pump.close()
    written = (tmp_path / "log.txt").read_text()
    assert value not in written and value not in pump.tail_text()
    assert "token=*** abc" in written and "******" in written
