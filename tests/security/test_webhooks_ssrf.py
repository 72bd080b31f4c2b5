"""Webhooks as a way into the server's network: loopback, link-local, private and other internal
destinations are refused at submit and again at send time (DNS rebinding), unless the admin allows
them; every POST is signed with the owner's secret; the payload never carries the job's env values."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from auth_helpers import client, make_app, user

from conftest import wait_for

from modelyard.destinations import check_webhooks, parse_allow
from modelyard.errors import ModelyardError
from modelyard.webhooks import WebhookSender

REFUSED = ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/",
           "http://172.16.0.1/", "http://192.168.1.1/", "http://[::1]/", "http://[fe80::1]/", "http://[fc00::1]/",
           "http://0.0.0.0/", "http://224.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://localhost:8080/hook"]


class Receiver:
    """A real HTTP receiver on 127.0.0.1 that keeps each POST's headers and body."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                outer.paths.append(self.path)
                outer.received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def submit(c: Any, *webhooks: str, env: dict[str, str] | None = None) -> Any:
    return c.post("/api/v1/jobs", json={"spec": {"command": ["true"], "webhooks": list(webhooks), "env": env or {}}})


def test_internal_destinations_are_refused_at_submit(tmp_path: Path) -> None:
    app, platform = make_app(tmp_path)
    try:
        c = client(app, token=user(platform, "alice"))
        for url in REFUSED:
            r = submit(c, "https://example.com/ok", url)
            assert r.status_code == 422, (url, r.text)
            error = r.json()["error"]
            assert error["field"] == "webhooks" and url in error["message"], error
        assert c.get("/api/v1/jobs").json()["total"] == 0  # nothing half-made
    finally:
        platform.close()


def test_the_admin_may_allow_networks(tmp_path: Path) -> None:
    app, platform = make_app(tmp_path, webhook_allow=("127.0.0.1/32", "10.0.0.0/8"))
    try:
        c = client(app, token=user(platform, "alice"))
        for url in ("http://127.0.0.1:9/hook", "http://10.1.2.3/", "http://localhost:9/"):
            assert submit(c, url).status_code == 201, url
        for url in ("http://169.254.169.254/", "http://127.0.0.2/", "http://192.168.1.1/"):
            assert submit(c, url).status_code == 422, url
    finally:
        platform.close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (the README's example)."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers.get("X-Modelyard-Signature", ""))


def test_deliveries_are_signed_and_carry_no_env_values(tmp_path: Path, receiver: Receiver) -> None:
    app, platform = make_app(tmp_path, webhook_allow=("127.0.0.1/32",), webhooks=(f"{receiver.url}/admin",),
                             webhook_secret="the-admins-secret")
    try:
        c = client(app, token=user(platform, "alice"))
        job = submit(c, f"{receiver.url}/alice", env={"API_KEY": "hunter2", "MODE": "fast"}).json()
        assert c.post(f"/api/v1/jobs/{job['id']}/stop").json()["state"] == "stopped"  # queued: ends at once
        wait_for(lambda: len(receiver.received) == 2, timeout=30, what="both deliveries")
        secret = c.get("/api/v1/webhook-secret").json()["secret"]
        delivered = dict(zip(receiver.paths, receiver.received))
        assert sorted(delivered) == ["/admin", "/alice"]
        for headers, body in receiver.received:
            assert json.loads(body)["job"]["id"] == job["id"]
            assert b"hunter2" not in body and b"fast" not in body
            assert json.loads(body)["job"]["env"] == {"API_KEY": "***", "MODE": "***"}
            assert json.loads(body)["job"]["webhooks"] == [f"{receiver.url}/***"]  # a hook's path may be its key
        admin_h, admin_body = delivered["/admin"]
        alice_h, alice_body = delivered["/alice"]
        assert verify("the-admins-secret", admin_h, admin_body) and not verify(secret, admin_h, admin_body)
        assert verify(secret, alice_h, alice_body)
        assert not verify(secret, alice_h, alice_body.replace(b"stopped", b"succeeded"))  # a forged body fails
        rotated = c.post("/api/v1/webhook-secret/rotate").json()["secret"]
        assert rotated != secret and c.get("/api/v1/webhook-secret").json()["secret"] == rotated
    finally:
        platform.close()


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names that resolve as the test says, one answer per lookup (we cannot run a rebinding DNS server)."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        if not answers[host]:
            raise socket.gaierror(socket.EAI_NONAME, "no more answers")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host].pop(0), port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_a_name_rebound_to_loopback_after_submit_is_refused_at_send_time(
        fake_dns: dict[str, list[str]], receiver: Receiver) -> None:
    fake_dns["rebind.example"] = ["93.184.215.14", "127.0.0.1"]  # public at submit, loopback at send
    url = f"http://rebind.example:{receiver.port}/hook"
    check_webhooks([url], ())  # passes at submit
    sender = WebhookSender(allow=(), attempts=1)
    try:
        sender.send([url], {"n": 1}, secret="s")
        sender.send([f"{receiver.url}/marker"], {"n": 2}, secret="s", checked=False)  # after the first
        wait_for(lambda: receiver.received, timeout=10, what="the marker delivery")
    finally:
        sender.close()
    assert [json.loads(body) for _h, body in receiver.received] == [{"n": 2}]
    with pytest.raises(ModelyardError, match="loopback"):
        fake_dns["rebind.example"] = ["127.0.0.1"]
        check_webhooks([url], ())


def test_the_sender_connects_to_the_address_it_checked(fake_dns: dict[str, list[str]], receiver: Receiver) -> None:
    # one answer only: a second lookup (by the HTTP client, after the check) would find nothing
    fake_dns["hooks.example"] = ["127.0.0.1"]
    sender = WebhookSender(allow=parse_allow(["127.0.0.1/32"]), attempts=1)
    try:
        sender.send([f"http://hooks.example:{receiver.port}/hook"], {"n": 1}, secret="s")
        wait_for(lambda: receiver.received, timeout=10, what="the delivery")
    finally:
        sender.close()
    headers, body = receiver.received[0]
    assert headers["Host"] == f"hooks.example:{receiver.port}" and json.loads(body) == {"n": 1}
    assert verify("s", headers, body)
