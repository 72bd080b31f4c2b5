"""The web UI without a browser: every page and partial renders, the session cookie, the UI's read endpoints."""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

import httpx
import pytest

from conftest import wait_for
from servers import ServerProcess, ui_sign_in

from modelyard.server.web import STATIC_DIR
from modelyard.server.web.render import TEMPLATES_DIR

PY = sys.executable
SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(60)"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("web") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", "MODELYARD_STOP_GRACE": "1"}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser_like(server: ServerProcess) -> Iterator[httpx.Client]:
    """An HTTP client holding the UI's session cookie, as a signed-in browser would."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = ui_sign_in(c, server.token, "/ui/queue")
        assert r.status_code == 303 and r.headers["location"] == "/ui/queue"
        yield c


@pytest.fixture(scope="module")
def job(server: ServerProcess) -> Iterator[dict]:
    with server.client() as c:
        j = c.post("/jobs", json={"spec": {"name": "sleeper", "command": SLEEPER}}).json()
        wait_for(lambda: c.get(f"/jobs/{j['id']}").json()["state"] == "running", what="sleeper running")
        yield j
        c.post(f"/jobs/{j['id']}/stop")


def test_every_page_and_partial_renders_with_its_data_as_json(browser_like: httpx.Client, job: dict) -> None:
    pages = ["/ui/jobs", "/ui/jobs/rows?metric=loss&state=running&q=sleep", f"/ui/jobs/{job['id']}",
             f"/ui/jobs/{job['id']}/live", "/ui/new", "/ui/queue", "/ui/queue/panel"]
    for path in pages:
        r = browser_like.get(path)
        assert r.status_code == 200, (path, r.text[:500])
        assert "text/html" in r.headers["content-type"]
        sep = "&" if "?" in path else "?"
        data = browser_like.get(f"{path}{sep}format=json")
        assert data.status_code == 200 and isinstance(data.json(), dict), path
    assert browser_like.get("/ui/jobs?format=json").json()["jobs"][0]["name"] == "sleeper"
    assert browser_like.get("/ui/login").status_code == 200


def test_every_referenced_template_static_file_and_module_exists() -> None:
    templates = {p.name for p in TEMPLATES_DIR.glob("*.html")}
    for path in TEMPLATES_DIR.glob("*.html"):
        for name in re.findall(r'{%\s*(?:include|extends|from|import)\s+"([^"]+)"', path.read_text()):
            assert name in templates, f"{path.name} uses missing template {name}"
            if name != "base.html":
                assert name.startswith("_"), f"{name}: partials start with _"
    for ref in re.findall(r'/ui/static/([\w./-]+)', (TEMPLATES_DIR / "base.html").read_text()):
        assert (STATIC_DIR / ref).is_file(), ref
    for js in (STATIC_DIR / "js").glob("*.js"):
        for ref in re.findall(r'(?:from|import\()\s*"\./([\w.-]+)"', js.read_text()):
            assert (STATIC_DIR / "js" / ref).is_file(), f"{js.name} imports missing {ref}"
    vendored = (STATIC_DIR / "vendor" / "VENDORED.md").read_text()
    for f in ("htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css", "htmx.LICENSE", "uPlot.LICENSE"):
        assert (STATIC_DIR / "vendor" / f).is_file() and f.split(".")[0] in vendored


def test_pages_need_a_session_and_a_bad_token_is_refused(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url) as c:
        r = c.get("/ui/jobs?state=running")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/jobs%3Fstate%3Drunning"
        assert c.get("/ui/jobs?format=json").status_code == 401
        assert ui_sign_in(c, "wrong").status_code == 401
        r = ui_sign_in(c, server.token, "https://evil.example/")
        assert r.headers["location"] == "/ui/jobs"  # no open redirect
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie


def test_the_cookie_stands_in_for_the_bearer_token_but_not_for_cross_site_writes(
        browser_like: httpx.Client, server: ServerProcess) -> None:
    assert browser_like.get("/api/v1/me").json()["name"] == "local"
    with server.client() as c:
        j = c.post("/jobs", json={"spec": {"command": SLEEPER}}).json()
    assert browser_like.post(f"/api/v1/jobs/{j['id']}/stop").status_code == 401  # a plain cross-site form post
    r = browser_like.post(f"/api/v1/jobs/{j['id']}/stop", headers={"X-Modelyard-UI": "1"})
    assert r.status_code == 200


def test_another_users_job_page_is_a_404_page(server: ServerProcess, job: dict) -> None:
    with server.client() as admin:
        bob_token = admin.post("/users", json={"name": "bob-pages", "no_isolation": True}).json()["token"]
    with httpx.Client(base_url=server.url) as bob:
        ui_sign_in(bob, bob_token)
        r = bob.get(f"/ui/jobs/{job['id']}")
        assert r.status_code == 404 and "Not found" in r.text
        assert bob.get("/ui/jobs?format=json").json()["total"] == 0


def test_queue_says_what_waits_for_which_resource(server: ServerProcess, browser_like: httpx.Client, job: dict) -> None:
    with server.client() as c:
        big = c.post("/jobs", json={"spec": {"name": "big", "command": SLEEPER, "resources": {"cpus": 4}}}).json()
        try:
            q = c.get("/queue").json()
            assert any(r["id"] == job["id"] and r["state"] == "running" for r in q["running"])
            waiting = next(w for w in q["waiting"] if w["id"] == big["id"])
            assert waiting["waits_for"] == ["cpus"]  # the sleeper holds a CPU (an earlier test's may be stopping)
            assert re.fullmatch(r"waits for cpus: asks 4, [0-3] free", waiting["reason"])
            assert "waits for cpus" in browser_like.get("/ui/queue").text
        finally:
            c.post(f"/jobs/{big['id']}/stop")


def test_log_size_latest_metric_and_zoom_window(server: ServerProcess) -> None:
    code = ("import json\nfor i in range(50): print(json.dumps({'metric': 'loss', 'value': i, 'step': i}))\n"
            "print('done')")
    with server.client() as c:
        j = c.post("/jobs", json={"spec": {"command": [PY, "-c", code]}}).json()
        wait_for(lambda: c.get(f"/jobs/{j['id']}").json()["state"] == "succeeded", what="metric job done")
        assert c.get(f"/jobs/{j['id']}/logs/size").json() == {"attempt": 1, "lines": 1, "done": True}
        latest = c.get("/metrics/latest", params={"jobs": f"{j['id']},999999", "name": "loss"}).json()
        assert latest["names"] == ["loss"] and latest["latest"][str(j["id"])]["value"] == 49
        window = c.get(f"/jobs/{j['id']}/metrics/window", params={"start": 10, "end": 19, "max_points": 100}).json()
        assert [p["step"] for p in window["loss"]] == list(range(10, 20))
        assert len(c.get(f"/jobs/{j['id']}/metrics/window", params={"max_points": 5}).json()["loss"]) <= 5
        # the columnar layout: the same series, one list per field
        cols = c.get(f"/jobs/{j['id']}/metrics", params={"layout": "columns"}).json()["loss"]
        assert cols["step"] == list(range(50)) and cols["value"] == [float(i) for i in range(50)]
        assert cols["epoch"] == [None] * 50 and len(cols["time"]) == 50
        small = c.get(f"/jobs/{j['id']}/metrics", params={"layout": "columns", "max_points": 10}).json()["loss"]
        assert 3 <= len(small["value"]) <= 10 and small["step"][0] == 0 and small["step"][-1] == 49
        bad = c.get(f"/jobs/{j['id']}/metrics", params={"layout": "rows"})
        assert bad.status_code == 422 and "layout" in bad.text


def test_a_page_carries_the_event_cursor_its_data_was_read_at(browser_like: httpx.Client, server: ServerProcess) -> None:
    """A change made after the page was built is replayed by its live connection, not lost."""
    html = browser_like.get("/ui/jobs").text
    cursor = int(re.search(r'data-events-after="(\d+)"', html).group(1))
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": ["true"]}}).json()
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded", what="job done")
    seen = []
    with browser_like.stream("GET", "/api/v1/events/stream", params={"after": cursor}, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                data = json.loads(line[6:])
                if data["id"] == job["id"]:
                    seen.append(data["event"]["to"])
                    if data["event"]["to"] == "succeeded":
                        break
    assert seen == ["queued", "starting", "running", "succeeded"]
    js = (STATIC_DIR / "js" / "events.js").read_text()
    assert "dataset.eventsAfter" in js and "?after=" in js
