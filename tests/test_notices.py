"""Notices, email and webhooks per job event (services/notices.py), through the real app in-process:
jobs move through the report route a supervisor uses, email goes to a real SMTP server
(aiosmtpd on 127.0.0.1, plain and STARTTLS with AUTH), webhooks to a real HTTP receiver."""
from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from fastapi.testclient import TestClient

from conftest import wait_for
from modelyard.config import Settings
from modelyard.db import jobs as store_jobs
from modelyard.db import notices as store_notices
from modelyard.errors import ModelyardError
from modelyard.jobs import notify
from modelyard.mail import parse_smtp_url
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform

sys.path.insert(0, str(Path(__file__).parent / "security"))
from fuzz_server import RefusingExecutor  # noqa: E402


# -- real receivers ------------------------------------------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.original_content or envelope.content))
        return "250 OK"


@dataclass
class Hooks:
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


def _receiver(hooks: Hooks) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            hooks.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hooks.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    return server


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _authenticator(_server: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mailer", b"p@ss word")
    return AuthResult(success=ok, handled=False)


# -- the platform, in-process ----------------------------------------------------------------------------


@dataclass
class World:
    client: TestClient
    platform: Platform
    admin: str
    hooks: Hooks

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}

    def user(self, name: str, email: str | None = None) -> str:
        body: dict[str, Any] = {"name": name, "no_isolation": True}
        if email:
            body["email"] = email
        r = self.client.post("/api/v1/users", json=body, headers=self.auth())
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def job(self, token: str, **spec: Any) -> tuple[int, int, str]:
        """A job of the token's user, placed: (job id, attempt id, the attempt's report token)."""
        r = self.client.post("/api/v1/jobs", json={"spec": {"command": ["python", "train.py"], "name": "train",
                                                            **spec}}, headers=self.auth(token))
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        placed = store_jobs.place(self.platform.db, job_id, gpus=[], token=f"attempt-{job_id}", executor="local")
        assert placed is not None
        return job_id, placed[1].id, f"attempt-{job_id}"

    def report(self, attempt: tuple[int, int, str], seq: int, **batch: Any) -> None:
        _, attempt_id, token = attempt
        r = self.client.post(f"/api/v1/attempts/{attempt_id}/report", json={"seq": seq, **batch},
                             headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text

    def fail(self, attempt: tuple[int, int, str], *, logs: int = 40) -> None:
        now = time.time()
        self.report(attempt, 1, events=[{"type": "started", "t": now}],
                    logs=[[now, "stdout", f"line {i}"] for i in range(logs)],
                    metrics=[["loss", 0.5, 1, None, now], ["loss", 0.25, 2, None, now], ["acc", 0.75, 2, None, now]])
        self.report(attempt, 2, events=[{"type": "exited", "reason": "exit_nonzero", "exit_code": 3, "t": now + 1}])


@contextmanager
def platform_world(home: Path, smtp_url: str | None, hooks: Hooks) -> Iterator[World]:
    home.mkdir(parents=True, exist_ok=True)
    env = {"MODELYARD_HOME": str(home), "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G",
           "MODELYARD_WEBHOOK_ALLOW": "127.0.0.1/32", "MODELYARD_PUBLIC_URL": "https://yard.example.com"}
    if smtp_url:
        env["MODELYARD_SMTP_URL"] = smtp_url
    settings = Settings.from_env(env)
    platform = Platform(settings, server_url="http://127.0.0.1:1", executor=RefusingExecutor(settings.capacity))
    admin = ensure_local_user(platform, home)
    client = TestClient(create_app(platform), raise_server_exceptions=False)
    try:
        yield World(client, platform, admin, hooks)
    finally:
        client.close()
        platform.close()


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[Inbox, int]]:
    from modelyard.supervisor.config import free_port

    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, inbox: tuple[Inbox, int]) -> Iterator[World]:
    hooks = Hooks()
    receiver = _receiver(hooks)
    url = f"smtp://127.0.0.1:{inbox[1]}?from=yard@example.com"
    with platform_world(tmp_path_factory.mktemp("notices") / "home", url, hooks) as w:
        yield w
    receiver.shutdown()


def _notices(w: World, token: str, **params: Any) -> dict[str, Any]:
    r = w.client.get("/api/v1/notices", params=params, headers=w.auth(token))
    assert r.status_code == 200, r.text
    return r.json()


# -- choices ----------------------------------------------------------------------------------------------


def test_the_default_choices_tell_of_every_end_and_email_what_went_wrong() -> None:
    d = notify.defaults()
    assert d["started"] == ()
    assert d["succeeded"] == ("notice", "webhook") and d["stopped"] == ("notice", "webhook")
    assert all(d[e] == ("notice", "email", "webhook") for e in ("failed", "timed_out", "lost"))
    stored = notify.merged(None, {"started": ["webhook", "notice"]})
    assert notify.channels(stored, "started") == ("notice", "webhook")  # the channels' own order
    assert notify.channels(stored, "failed") == d["failed"]  # not chosen: still the default
    with pytest.raises(ModelyardError, match="unknown channel 'sms'"):
        notify.merged(stored, {"failed": ["sms"]})
    with pytest.raises(ModelyardError, match="unknown event 'exploded'"):
        notify.merged(stored, {"exploded": []})
    assert notify.check_email(" ann@example.com ") == "ann@example.com" and notify.check_email("") is None
    for bad in ("ann", "ann@", "a b@example.com", "<ann@example.com>", "ann@example.com, bob@example.com"):
        with pytest.raises(ModelyardError, match="not an email address"):
            notify.check_email(bad)


def test_smtp_urls_are_checked_at_start() -> None:
    s = parse_smtp_url("smtps://me%40corp:s3cr%2Ft@mail.example.com?from=yard@example.com")
    assert (s.host, s.port, s.implicit_tls, s.username, s.password) == ("mail.example.com", 465, True, "me@corp", "s3cr/t")
    assert "s3cr" not in repr(s)
    assert parse_smtp_url("smtp://mail.example.com?from=y@example.com").port == 25
    for bad, why in (("http://mail.example.com?from=a@b", "smtp://"), ("smtp://mail.example.com", "from"),
                     ("smtp://mail.example.com?from=a@b&tls=1", "unknown parameter 'tls'")):
        with pytest.raises(ModelyardError, match=why):
            Settings.from_env({"MODELYARD_HOME": "/tmp/unused", "MODELYARD_SMTP_URL": bad})


# -- a job's events -------------------------------------------------------------------------------------


def test_a_failed_job_leaves_a_notice_an_email_and_a_webhook(world: World, inbox: tuple[Inbox, int]) -> None:
    token = world.user("ann", email="ann@example.com")
    attempt = world.job(token, webhooks=[world.hooks.url])
    world.fail(attempt)
    job_id = attempt[0]
    listing = _notices(world, token)
    assert listing["unread"] == 1  # started is no notice by default
    [notice] = listing["notices"]
    assert notice["event"] == "failed" and notice["title"] == f"Job #{job_id} train failed"
    assert notice["link"] == f"/ui/jobs/{job_id}" and not notice["read"]
    mail = wait_for(lambda: next((m for m in inbox[0].messages if m["To"] == "ann@example.com"), None),
                    10, what="ann's email")
    assert mail["Subject"] == f"[modelyard] Job #{job_id} train failed" and mail["From"] == "yard@example.com"
    body = mail.get_payload(decode=True).decode().replace("\r\n", "\n")
    assert "State: failed" in body and "Exit code: 3" in body and "Duration: " in body
    assert "loss = 0.25" in body and "acc = 0.75" in body  # each series' last value
    assert f"Page: https://yard.example.com/ui/jobs/{job_id}" in body
    assert "line 39" in body and "line 10\n" in body and "line 9\n" not in body  # the last 30 lines
    hook = wait_for(lambda: next((h for h in world.hooks.received if h["job"]["id"] == job_id), None), 10,
                    what="the webhook")
    assert hook["event"] == "job.ended" and hook["job_event"] == "failed" and hook["state"] == "failed"


def test_a_started_webhook_comes_when_asked_for_and_others_do_not(world: World) -> None:
    token = world.user("sam")
    started_only = world.job(token, webhooks=[world.hooks.url], webhook_events=["started"])
    world.fail(started_only)
    # a later job's webhook: the deliveries go in order, so once it is in, the first job's failed would be too
    marker = world.job(token, webhooks=[world.hooks.url], webhook_events=["failed"])
    world.fail(marker)
    wait_for(lambda: any(h["job"]["id"] == marker[0] for h in world.hooks.received), 10, what="the marker")
    first = [h for h in world.hooks.received if h["job"]["id"] == started_only[0]]
    assert [(h["event"], h["job_event"], h["state"]) for h in first] == [("job.started", "started", "running")]
    marked = [h["job_event"] for h in world.hooks.received if h["job"]["id"] == marker[0]]
    assert marked == ["failed"]


def test_a_failure_retried_at_once_tells_nobody(world: World) -> None:
    token = world.user("rita")
    attempt = world.job(token, retries=1)
    world.fail(attempt)
    assert store_jobs.get_job(world.platform.db, attempt[0]).state.value == "queued"
    assert _notices(world, token)["notices"] == []


def test_a_user_who_chose_hears_of_starts_and_not_of_successes(world: World) -> None:
    token = world.user("sue")
    r = world.client.patch("/api/v1/profile", json={"notify": {"started": ["notice"], "succeeded": []}},
                           headers=world.auth(token))
    assert r.status_code == 200 and r.json()["notify"]["started"] == ["notice"], r.text
    attempt = world.job(token)
    now = time.time()
    world.report(attempt, 1, events=[{"type": "started", "t": now}])
    world.report(attempt, 2, events=[{"type": "exited", "reason": "exit_zero", "exit_code": 0, "t": now}])
    assert store_jobs.get_job(world.platform.db, attempt[0]).state.value == "succeeded"
    assert [n["event"] for n in _notices(world, token)["notices"]] == ["started"]
    queued = world.client.post("/api/v1/jobs", json={"spec": {"command": ["true"], "name": "waits"}},
                               headers=world.auth(token)).json()
    world.client.post(f"/api/v1/jobs/{queued['id']}/stop", headers=world.auth(token))
    assert [n["event"] for n in _notices(world, token)["notices"]] == ["stopped", "started"]  # newest first


def test_notices_are_marked_read_one_by_one_or_all_and_only_by_their_owner(world: World) -> None:
    token, other = world.user("mia"), world.user("max")
    for _ in range(2):
        world.fail(world.job(token))
    first, second = _notices(world, token)["notices"]
    assert world.client.post(f"/api/v1/notices/{first['id']}/read", headers=world.auth(other)).status_code == 404
    r = world.client.post(f"/api/v1/notices/{first['id']}/read", headers=world.auth(token))
    assert r.status_code == 200 and r.json()["notice"]["read"] and r.json()["unread"] == 1
    assert [n["id"] for n in _notices(world, token, unread="true")["notices"]] == [second["id"]]
    assert world.client.post("/api/v1/notices/read-all", headers=world.auth(other)).json()["marked"] == 0
    assert _notices(world, token)["unread"] == 1  # max's read-all marked his own only
    assert world.client.post("/api/v1/notices/read-all", headers=world.auth(token)).json()["marked"] == 1
    assert _notices(world, token)["unread"] == 0


def test_the_profile_is_the_users_own_and_an_admin_sets_emails(world: World) -> None:
    token, other = world.user("lea"), world.user("leo")
    me = world.client.get("/api/v1/profile", headers=world.auth(token)).json()
    assert me["email"] is None and me["email_enabled"] and me["notify"]["failed"] == ["notice", "email", "webhook"]
    r = world.client.patch("/api/v1/profile", json={"email": "lea@example.com"}, headers=world.auth(token))
    assert r.json()["email"] == "lea@example.com"
    bad = world.client.patch("/api/v1/profile", json={"email": "lea at example"}, headers=world.auth(token))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "email"
    bad = world.client.patch("/api/v1/profile", json={"notify": {"failed": ["pager"]}}, headers=world.auth(token))
    assert bad.status_code == 422 and "pager" in bad.json()["error"]["message"]
    r = world.client.patch("/api/v1/profile", params={"user": "lea"}, json={"email": "x@example.com"},
                           headers=world.auth(other))
    assert r.status_code == 403
    r = world.client.patch("/api/v1/profile", params={"user": "lea"}, json={"email": "lea@corp.example"},
                           headers=world.auth())
    assert r.status_code == 200 and r.json()["email"] == "lea@corp.example"
    r = world.client.patch("/api/v1/profile", params={"user": "lea"}, json={"notify": {"started": ["notice"]}},
                           headers=world.auth())
    assert r.status_code == 403  # choices are each user's own
    assert world.client.get("/api/v1/profile", params={"user": "nobody"}, headers=world.auth()).status_code == 404
    r = world.client.patch("/api/v1/profile", json={"email": None}, headers=world.auth(token))
    assert r.json()["email"] is None


# -- SMTP --------------------------------------------------------------------------------------------------


def test_email_over_starttls_with_auth(tmp_path: Path) -> None:
    from modelyard.supervisor.config import free_port

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler, port = Inbox(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            auth_required=True, authenticator=_authenticator)
    controller.start()
    url = f"smtp://mailer:p%40ss%20word@127.0.0.1:{port}?from=yard@example.com&cafile={cert}"
    try:
        with platform_world(tmp_path / "home", url, Hooks()) as w:
            token = w.user("tia", email="tia@example.com")
            attempt = w.job(token)
            w.fail(attempt, logs=3)
            mail = wait_for(lambda: handler.messages[0] if handler.messages else None, 15, what="the email")
            assert mail["To"] == "tia@example.com" and f"#{attempt[0]} train failed" in mail["Subject"]
            assert "line 2" in mail.get_payload(decode=True).decode()
            assert w.platform.mailer is not None and w.platform.mailer.failed == 0
    finally:
        controller.stop()


def test_an_email_that_cannot_be_sent_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from modelyard.mail import Mailer
    from modelyard.supervisor.config import free_port

    mailer = Mailer(parse_smtp_url(f"smtp://127.0.0.1:{free_port()}?from=yard@example.com"), attempts=2,
                    max_wait=0.05)
    try:
        mailer.send(mailer.message("ann@example.com", "[modelyard] Job #1 train failed", "body"))
        wait_for(lambda: mailer.failed == 1, 10, what="the failure")
    finally:
        mailer.close()
    assert any(r.levelname == "ERROR" and "ann@example.com" in r.getMessage() and "Job #1" in r.getMessage()
               for r in caplog.records)


def test_the_notice_is_written_with_the_state_change(world: World) -> None:
    """In the same transaction: a reader that sees the change sees its notice."""
    token = world.user("nia")
    attempt = world.job(token)
    world.fail(attempt)
    job = store_jobs.get_job(world.platform.db, attempt[0])
    notices = store_notices.list_notices(world.platform.db, job.user_id)
    assert job.state.value == "failed" and [n.job_id for n in notices] == [job.id]
