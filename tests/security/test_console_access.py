"""A notebook console's proxy (README "Notebook consoles") tried from the outside: by another user, by an
admin, by the job itself, and for what it forwards.

In-process (inproc.py: the real app, no scheduler): alice's console job is placed and reported running
through the real store functions, and a real HTTP and websocket server listens where jobs/console.py
says her console does, echoing what reaches it, so each test sees exactly what JupyterLab would get.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from auth_helpers import sign_in
from inproc import InProc, in_process
from starlette.testclient import WebSocketDenialResponse

from conftest import wait_for
from modelyard.db import jobs as store_jobs
from modelyard.db import reports
from modelyard.db.users import hash_token
from modelyard.jobs import console
from modelyard.scheduler.launch import LaunchContext, build_launch

ATTEMPT_TOKEN = "attempt-token-of-alices-console"


class Echo:
    """What the console's address received: each request's path, query and headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        seen = {"path": scope["path"], "query": scope.get("query_string", b"").decode(), "headers": headers}
        self.seen.append(seen)
        body = json.dumps(seen).encode()
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            message = await receive()
            await send({"type": "websocket.send", "text": f"echo {message.get('text')}"})
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-security-policy", b"frame-ancestors 'self'"),
            (b"set-cookie", b"modelyard_session=forged; Path=/"), (b"set-cookie", b"_xsrf=theirs; Path=/")]})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process(tmp_path_factory.mktemp("console") / "home") as app:
        alice, bob = app.new_user("alice"), app.new_user("bob")
        r = app.client.post("/api/v1/consoles", json={"spec": {"name": "lab"}, "idle_timeout": "10m"},
                            headers=app.auth(alice))
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        job, attempt = store_jobs.place(app.platform.db, job_id, token=ATTEMPT_TOKEN, executor="local")
        launch = build_launch(LaunchContext(settings=app.platform.settings, server_url="http://127.0.0.1:1",
                                            db=app.platform.db), job, attempt, ATTEMPT_TOKEN)
        reports.apply_report(app.platform.db, attempt, {"seq": 1, "events": [{"type": "started", "t": 1.0}]})
        port = console.console_port(attempt.id, hash_token(ATTEMPT_TOKEN))
        echo = Echo()
        server = uvicorn.Server(uvicorn.Config(echo, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, timeout=10, what="the stand-in console")
        assert launch.spec.env[console.PORT_VAR] == str(port)
        yield {"app": app, "alice": alice, "bob": bob, "job_id": job_id, "attempt": attempt, "echo": echo}
        server.should_exit = True
        thread.join(10)


def _signed_in(app: InProc, token: str) -> Any:
    c = app.client
    c.cookies.clear()
    assert sign_in(c, token).status_code in (200, 303)
    return c


def test_the_owner_reaches_it_with_the_console_token_and_none_of_ours(world: dict[str, Any]) -> None:
    app, echo, job_id = world["app"], world["echo"], world["job_id"]
    c = _signed_in(app, world["alice"])
    c.cookies.set("_xsrf", "jupyters-own")
    r = c.get(f"/ui/jobs/{job_id}/lab/api/status", headers={"Authorization": "Bearer " + world["alice"],
                                                            "X-Modelyard-UI": "1"})
    assert r.status_code == 200, r.text
    got = r.json()["headers"]
    attempt = world["attempt"]
    assert got["authorization"] == f"token {console.console_token(attempt.id, hash_token(ATTEMPT_TOKEN))}"
    assert "modelyard_session" not in got.get("cookie", "") and "_xsrf=jupyters-own" in got["cookie"]
    assert world["alice"] not in json.dumps(got) and "x-modelyard-ui" not in got
    assert got["host"].startswith("127.0.0.1:")
    # its own policy, not the UI's; and it cannot set our session cookie
    assert r.headers["content-security-policy"] == "frame-ancestors 'self'"
    set_cookies = r.headers.get_list("set-cookie")
    assert any(s.startswith("_xsrf=") for s in set_cookies)
    assert not any(s.startswith("modelyard_session") for s in set_cookies)
    # the UI's own pages keep their strict policy
    assert "script-src 'self'" in c.get("/ui/jobs").headers["content-security-policy"]


@pytest.mark.parametrize("who", ["bob", "admin"])
def test_another_user_and_an_admin_get_404(world: dict[str, Any], who: str) -> None:
    app, job_id = world["app"], world["job_id"]
    c = _signed_in(app, world["bob"] if who == "bob" else app.admin)
    before = len(world["echo"].seen)
    for method in ("GET", "POST", "PUT", "DELETE"):
        r = c.request(method, f"/ui/jobs/{job_id}/lab/api/contents/x.ipynb")
        assert r.status_code == 404, (method, r.text)
    with pytest.raises(WebSocketDenialResponse) as denied:
        with c.websocket_connect(f"/ui/jobs/{job_id}/lab/api/kernels/k/channels"):
            pass
    assert denied.value.status_code == 404
    assert c.get(f"/api/v1/jobs/{job_id}/console").status_code == 404
    assert len(world["echo"].seen) == before  # nothing reached the console


def test_signed_out_and_api_tokens_do_not_open_it(world: dict[str, Any]) -> None:
    app, job_id = world["app"], world["job_id"]
    app.client.cookies.clear()
    before = len(world["echo"].seen)
    r = app.client.get(f"/ui/jobs/{job_id}/lab/lab", headers=app.auth(world["alice"]), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    with pytest.raises(WebSocketDenialResponse) as denied:
        with app.client.websocket_connect(f"/ui/jobs/{job_id}/lab/api/events/subscribe", headers=app.auth(world["alice"])):
            pass
    assert denied.value.status_code == 401
    assert len(world["echo"].seen) == before


def test_the_owners_websocket_is_bridged_without_our_cookie(world: dict[str, Any]) -> None:
    app, job_id = world["app"], world["job_id"]
    c = _signed_in(app, world["alice"])
    with c.websocket_connect(f"/ui/jobs/{job_id}/lab/api/kernels/k/channels") as ws:
        ws.send_text("hello")
        assert ws.receive_text() == "echo hello"
    got = world["echo"].seen[-1]
    assert got["path"] == f"/ui/jobs/{job_id}/lab/api/kernels/k/channels"
    assert "modelyard_session" not in got["headers"].get("cookie", "")
    assert got["headers"]["authorization"].startswith("token ")


@pytest.mark.parametrize("path", ["..%2f..%2f..%2fapi/v1/me", "//evil.example/x", "@evil.example/x", "%2e%2e/%2e%2e/"])
def test_the_proxy_cannot_be_pointed_elsewhere(world: dict[str, Any], path: str) -> None:
    """Whatever the path, the request goes to the console's own address (the echo sees it)."""
    app, job_id = world["app"], world["job_id"]
    c = _signed_in(app, world["alice"])
    before = len(world["echo"].seen)
    r = c.get(f"/ui/jobs/{job_id}/lab/{path}")
    assert r.status_code in (200, 404), r.text
    if r.status_code == 200:
        assert len(world["echo"].seen) == before + 1 and r.json()["headers"]["host"].startswith("127.0.0.1:")


def test_a_job_cannot_choose_its_console_or_address(world: dict[str, Any]) -> None:
    app, alice = world["app"], world["alice"]
    r = app.client.post("/api/v1/jobs", json={"spec": {"command": ["python", "-c", "1"], "console": {}}},
                        headers=app.auth(alice))
    assert r.status_code == 422 and r.json()["error"]["field"] == "spec.console"
    r = app.client.post("/api/v1/consoles", json={"spec": {"command": ["nc", "-l", "8080"]}}, headers=app.auth(alice))
    assert r.status_code == 422 and "command" in r.json()["error"]["message"]
    # the port is the platform's, derived from the attempt, whatever the job's own env says
    forged = {console.PORT_VAR: "5432", console.TOKEN_VAR: "chosen", console.BASE_URL_VAR: "/elsewhere/",
              console.HOST_VAR: "0.0.0.0"}
    r = app.client.post("/api/v1/consoles", json={"spec": {"env": forged}}, headers=app.auth(alice))
    assert r.status_code == 201, r.text
    job, attempt = store_jobs.place(app.platform.db, r.json()["id"], token="t-forged", executor="local")
    ctx = LaunchContext(settings=app.platform.settings, server_url="http://127.0.0.1:1", db=app.platform.db)
    launch = build_launch(ctx, job, attempt, "t-forged").spec
    assert launch.env[console.PORT_VAR] == str(console.console_port(attempt.id, hash_token("t-forged")))
    assert launch.env[console.BASE_URL_VAR] == f"/ui/jobs/{job.id}/lab/"
    assert launch.env[console.HOST_VAR] == console.HOST  # not every address of the machine
    assert launch.secrets[console.TOKEN_VAR] == console.console_token(attempt.id, hash_token("t-forged"))
    assert console.TOKEN_VAR not in launch.env  # given as a secret: shown as *** in its log


def test_the_console_token_is_revoked_when_the_job_ends(tmp_path: Path, database_url: str) -> None:
    with in_process(tmp_path / "home", database_url) as app:
        carol = app.new_user("carol")
        job_id = app.client.post("/api/v1/consoles", json={"spec": {}}, headers=app.auth(carol)).json()["id"]
        job, attempt = store_jobs.place(app.platform.db, job_id, token="t1", executor="local")
        ctx = LaunchContext(settings=app.platform.settings, server_url="http://127.0.0.1:1", db=app.platform.db)
        spec = build_launch(ctx, job, attempt, "t1").spec
        token = spec.secrets["MODELYARD_TOKEN"]
        assert spec.env["MODELYARD_URL"] == "http://127.0.0.1:1"
        assert app.client.get("/api/v1/me", headers=app.auth(token)).json()["name"] == "carol"
        names = [t["name"] for t in app.client.get("/api/v1/tokens", headers=app.auth(carol)).json()["tokens"]]
        assert f"console job {job_id}" in names
        # it ends as an idle console does: its supervisor reports the exit, through the real route
        for batch in ({"seq": 1, "events": [{"type": "started", "t": 1.0}]},
                      {"seq": 2, "events": [{"type": "exited", "reason": "exit_zero", "exit_code": 0}], "final": True}):
            r = app.client.post(f"/api/v1/attempts/{attempt.id}/report", json=batch, headers=app.auth("t1"))
            assert r.status_code == 200, r.text
        assert store_jobs.get_job(app.platform.db, job_id).state.value == "succeeded"
        assert app.client.get("/api/v1/me", headers=app.auth(token)).status_code == 401


def squat(port: int, uid: int = 65534, host: str = "127.0.0.1") -> tuple[int, Any]:
    """A process of ``uid`` listening on ``port`` that writes the first line of each connection to a pipe:
    (its pid, the pipe's reading end). Forked, not run: the test's Python may not be readable by ``uid``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but a socket from here on
        try:
            os.close(read_fd)
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket()
            s.bind((host, port))
            s.listen()
            os.write(write_fd, b"listening\n")
            while True:
                c, _ = s.accept()
                os.write(write_fd, c.recv(200).split(b"\n")[0].strip() + b"\n")
                c.close()
        finally:
            os._exit(1)
    os.close(write_fd)
    return pid, os.fdopen(read_fd)


def test_a_port_another_uid_holds_gets_nothing(world: dict[str, Any]) -> None:
    """Another user's process that took the console's port first (its console then cannot start) gets
    neither the owner's browser nor the console token: the proxy checks the listener's uid."""
    app, alice = world["app"], world["alice"]
    job_id = app.client.post("/api/v1/consoles", json={"spec": {}}, headers=app.auth(alice)).json()["id"]
    job, attempt = store_jobs.place(app.platform.db, job_id, token="t-squatted", executor="local")
    reports.apply_report(app.platform.db, attempt, {"seq": 1, "events": [{"type": "started", "t": 1.0}]})
    port = console.console_port(attempt.id, hash_token("t-squatted"))
    pid, lines = squat(port)
    try:
        assert lines.readline().strip() == "listening"
        c = _signed_in(app, alice)
        r = c.get(f"/ui/jobs/{job_id}/lab/api/status")
        assert r.status_code == 409 and "another user" in r.json()["error"]["message"]
        page = c.get(f"/ui/jobs/{job_id}/lab/lab", headers={"Accept": "text/html"})  # a person, told so
        assert page.status_code == 503 and "another user" in page.text and page.headers["retry-after"] == "2"
        with pytest.raises(WebSocketDenialResponse):
            with c.websocket_connect(f"/ui/jobs/{job_id}/lab/api/kernels/k/channels"):
                pass
        with socket.create_connection(("127.0.0.1", port)) as sentinel:
            sentinel.sendall(b"sentinel\n")
        assert lines.readline().strip() == "sentinel"  # the first connection it ever got
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        lines.close()


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.testserver"}, {"Sec-Fetch-Site": "same-site"},
                                     {"Origin": "null"}])
def test_another_sites_pages_cannot_drive_the_owners_console(world: dict[str, Any], headers: dict[str, str]) -> None:
    """A sibling subdomain is the same site, so the Strict session cookie comes with its requests: the
    proxy refuses its websockets and unsafe requests, which JupyterLab's own XSRF check would have."""
    app, job_id = world["app"], world["job_id"]
    c = _signed_in(app, world["alice"])
    before = len(world["echo"].seen)
    assert c.post(f"/ui/jobs/{job_id}/lab/api/kernels", headers=headers).status_code == 403
    with pytest.raises(WebSocketDenialResponse) as denied:
        with c.websocket_connect(f"/ui/jobs/{job_id}/lab/api/kernels/k/channels", headers=headers):
            pass
    assert denied.value.status_code == 403
    assert len(world["echo"].seen) == before
    # its own pages, which say where they come from, go through
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert c.post(f"/ui/jobs/{job_id}/lab/api/kernels", headers=own).status_code == 200
    with c.websocket_connect(f"/ui/jobs/{job_id}/lab/api/kernels/k/channels", headers=own) as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "echo hi"


def test_a_path_reaches_the_console_as_the_browser_encoded_it(world: dict[str, Any]) -> None:
    """A notebook named ``a?b #1.ipynb`` is that file, not ``a`` with a query."""
    app, job_id = world["app"], world["job_id"]
    c = _signed_in(app, world["alice"])
    r = c.get(f"/ui/jobs/{job_id}/lab/api/contents/a%3Fb%20%231.ipynb?content=1")
    assert r.status_code == 200, r.text
    assert r.json()["path"] == f"/ui/jobs/{job_id}/lab/api/contents/a?b #1.ipynb" and r.json()["query"] == "content=1"
    assert c.get("/ui/jobs/99999999999999999999/lab/api/status").status_code == 422  # a bounded id, not a 500
