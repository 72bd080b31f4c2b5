"""The HTTP API over a real server: auth, users, ownership, validation, streams, OpenAPI."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import httpx
import pytest

from conftest import wait_for
from servers import ServerProcess

PY = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("api") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G",
                             "MODELYARD_NODE_LABELS": "zone=lab,disk=ssd"}).start()
    yield srv
    srv.stop()


def test_health_and_openapi_need_no_token(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/api/v1/health").json()["status"] == "ok"
    doc = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert "/api/v1/jobs" in doc["paths"] and "/api/v1/jobs/{job_id}/logs/stream" in doc["paths"]


def test_token_file_is_private(server: ServerProcess) -> None:
    assert (server.home / "token").stat().st_mode & 0o777 == 0o600


def test_requests_without_a_valid_token_are_refused(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/api/v1/jobs")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    with server.client(token="nope") as c:
        assert c.get("/jobs").status_code == 401


def test_users_see_only_their_own_jobs(server: ServerProcess) -> None:
    with server.client() as admin:
        r = admin.post("/users", json={"name": "bob", "no_isolation": True})
        assert r.status_code == 201
        bob_token = r.json()["token"]
        assert admin.post("/users", json={"name": "bob", "no_isolation": True}).status_code == 409
        assert admin.post("/users", json={"name": "a b", "no_isolation": True}).json()["error"]["field"] == "name"
        mine = admin.post("/jobs", json={"spec": {"command": ["true"], "name": "admin-job"}}).json()
        with server.client(token=bob_token) as bob:
            assert bob.get("/me").json() == {"id": r.json()["user"]["id"], "name": "bob", "is_admin": False}
            assert bob.get(f"/jobs/{mine['id']}").status_code == 404
            assert bob.post(f"/jobs/{mine['id']}/stop").status_code == 404
            assert bob.get(f"/jobs/{mine['id']}/logs").status_code == 404
            assert bob.get(f"/jobs/{mine['id']}/metrics").status_code == 404
            assert bob.post(f"/jobs/{mine['id']}/clone", json={}).status_code == 404
            assert bob.get("/jobs", params={"all": True}).json()["total"] == 0
            assert bob.post("/users", json={"name": "eve"}).status_code == 403
            theirs = bob.post("/jobs", json={"spec": {"command": ["true"]}}).json()
            assert theirs["owner"] == "bob"
        everyone = admin.get("/jobs", params={"all": True}).json()
        assert {j["owner"] for j in everyone["jobs"]} >= {"local", "bob"}


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("post", "/jobs", {"spec": {"command": ["x"], "priority": "high"}}, "spec.priority"),
    ("post", "/jobs", {"spec": {"command": ["x"], "max_runtime": "forever"}}, "spec.max_runtime"),
    ("post", "/jobs", {"spec": {}}, "spec.command"),
    ("post", "/jobs", {"nope": 1}, "spec"),
    ("post", "/jobs", [1, 2], "body"),
    ("get", "/jobs?limit=0", None, "limit"),
    ("get", "/jobs?state=sleeping", None, "state"),
    ("get", "/jobs/abc", None, "job_id"),
    ("post", "/attempts/1/report", None, None),
])
def test_bad_input_is_a_4xx_naming_the_field(server: ServerProcess, method: str, path: str, body: object,
                                             field: str | None) -> None:
    with server.client() as c:
        r = c.request(method.upper(), path, json=body) if body is not None else c.request(method.upper(), path)
        assert 400 <= r.status_code < 500, r.text
        err = r.json()["error"]
        assert err["message"]
        if field:
            assert err["field"] == field, err


def test_garbage_bodies_never_cause_a_500(server: ServerProcess) -> None:
    with server.client() as c:
        for content in (b"", b"{", b"\xff\xfe", b'{"spec": {"command": "' + b"x" * 100000 + b'", "env": {"": "1"}}}'):
            r = c.post("/jobs", content=content, headers={"Content-Type": "application/json"})
            assert 400 <= r.status_code < 500, (content[:20], r.text)
        r = c.post("/attempts/99999/report", content=b"{}", headers={"Content-Type": "application/json"})
        assert r.status_code == 401


def test_log_stream_delivers_lines_live_then_ends(server: ServerProcess) -> None:
    code = "import time\nfor i in range(5):\n    print(f'tick {i}', flush=True); time.sleep(0.2)\n"
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": [PY, "-c", code]}}).json()
        got: list[str] = []
        end = None
        with c.stream("GET", f"/jobs/{job['id']}/logs/stream", timeout=60) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    if event == "line":
                        got.append(data["text"])
                    elif event == "end":
                        end = data
                        break
        assert got == [f"tick {i}" for i in range(5)]
        assert end is not None and end["state"] == "succeeded"


def test_job_event_stream_reports_state_changes(server: ServerProcess) -> None:
    with server.client() as c:
        seen: list[tuple[int, str]] = []
        with c.stream("GET", "/events/stream", timeout=60) as r:
            job = c.post("/jobs", json={"spec": {"command": ["true"]}}).json()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    if data["id"] == job["id"]:
                        seen.append((data["id"], data["event"]["to"]))
                        if data["event"]["to"] == "succeeded":
                            break
        assert [s for _, s in seen] == ["queued", "starting", "running", "succeeded"]


def _job_events(c: httpx.Client, job_id: int, until: str, **kw: object) -> list[tuple[int, str]]:
    """(event id, to-state) of one job's events read from the stream until state ``until``."""
    seen: list[tuple[int, str]] = []
    with c.stream("GET", "/events/stream", timeout=60, **kw) as r:
        event_id = None
        for line in r.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                if data["id"] == job_id:
                    seen.append((event_id, data["event"]["to"]))
                    if data["event"]["to"] == until:
                        break
    return seen


def test_job_event_stream_replays_after_a_cursor_and_last_event_id_wins(server: ServerProcess) -> None:
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": ["true"]}}).json()
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded", what="job done")
        # the job ended before we connected: ?after=0 replays its whole history
        history = _job_events(c, job["id"], "succeeded", params={"after": 0})
        assert [s for _, s in history] == ["queued", "starting", "running", "succeeded"]
        ids = [i for i, _ in history]
        assert ids == sorted(ids) and None not in ids
        # a reconnect carries Last-Event-ID with the first URL: the header is the newer cursor
        resumed = _job_events(c, job["id"], "succeeded", params={"after": 0},
                              headers={"Last-Event-ID": str(ids[1])})
        assert [s for _, s in resumed] == ["running", "succeeded"]


def test_capacity(server: ServerProcess) -> None:
    with server.client() as c:
        cap = c.get("/capacity").json()
        assert cap["total"] == {"gpus": 0, "cpus": 4.0, "memory": 8 * 1024**3}


def test_capacity_lists_the_local_node_with_its_labels_and_use(server: ServerProcess) -> None:
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": [PY, "-c", "import time; time.sleep(60)"], "resources": {"cpus": 2},
                                             "node_labels": ["zone=lab"]}}).json()
        try:
            wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "running", timeout=30)
            [node] = c.get("/capacity").json()["nodes"]
            assert node["id"] == "local" and node["labels"] == {"zone": "lab", "disk": "ssd"}
            assert node["total"] == {"gpus": 0, "cpus": 4.0, "memory": 8 * 1024**3}
            assert node["used"]["cpus"] >= 2 and node["jobs"] >= 1
            shown = c.get(f"/jobs/{job['id']}").json()
            assert (shown["nodes"], shown["node_labels"]) == (1, {"zone": "lab"})
            assert [s["node"] for s in shown["attempts"][0]["nodes"]] == ["local"]
        finally:
            c.post(f"/jobs/{job['id']}/stop")


@pytest.mark.parametrize(("spec", "field", "words"), [
    ({"nodes": 2}, "nodes", "MODELYARD_EXECUTOR=ray"),
    ({"node_labels": {"gpu": "h100"}}, "node_labels", "no node has label gpu=h100 (labels there are: disk=ssd, zone=lab)"),
    ({"resources": {"cpus": 8}}, "resources.cpus", "asks for 8 CPU(s) but this platform has 4 cpus in total"),
])
def test_a_job_that_can_never_be_placed_is_refused_at_submit(server: ServerProcess, spec: dict[str, object],
                                                             field: str, words: str) -> None:
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": ["true"], **spec}})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert (err["code"], err["field"]) == ("unsatisfiable", field)
        assert words in err["message"]
