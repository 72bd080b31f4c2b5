"""What every browser test module shares: one server and one Chromium per module, signing in,
submitting through the API, and waiting for a page to be ready. A module that imports the fixtures
(``server``, ``playwright``, ``browser``, ``page``) gets its own server and browser.
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, Playwright, expect, sync_playwright

from conftest import wait_for
from servers import ServerProcess

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-quic", "--no-first-run", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PY = sys.executable
# prints a metric point every 0.25 s for ~8 s: long enough to watch the chart grow
CURVE = (f"{PY} -u -c \"import json,time,math;[(print(json.dumps(dict(metric='loss',value=math.exp(-i/10),step=i,"
         f"epoch=i//8)),flush=True),print('step',i,flush=True),time.sleep(0.25)) for i in range(32)]\"")
SLEEPER = [PY, "-c", "import time; print('up', flush=True); time.sleep(120)"]

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("web") / "home",
                        env={"MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", "MODELYARD_STOP_GRACE": "1"}).start()
    yield srv
    with srv.client() as c:  # leave no supervisor behind
        for j in c.get("/jobs", params={"all": True, "limit": 1000}).json()["jobs"]:
            if j["state"] in ("queued", "starting", "running"):
                c.post(f"/jobs/{j['id']}/stop")
    srv.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
    b = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


def sign_in(browser: Browser, server: ServerProcess, token: str, *, width: int = 1280) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{server.url}/ui/jobs")
    expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/jobs")
    page.fill("input[name=token]", token)
    page.click("button.primary")
    expect(page).to_have_url(f"{server.url}/ui/jobs")
    return page


@pytest.fixture
def page(browser: Browser, server: ServerProcess) -> Iterator[Page]:
    p = sign_in(browser, server, server.token)
    yield p
    p.context.close()


def submit(server: ServerProcess, **spec: object) -> dict:
    with server.client() as c:
        r = c.post("/jobs", json={"spec": spec})
        assert r.status_code == 201, r.text
        return r.json()


def stop(server: ServerProcess, job_id: int) -> None:
    with server.client() as c:
        r = c.post(f"/jobs/{job_id}/stop")
        assert r.status_code == 200, r.text


def goto_ready(page: Page, url: str) -> None:
    """Open ``url`` and wait until its page module has bound its buttons and forms (app.js sets
    html[data-ready]); a click before then would go to no handler."""
    page.goto(url)
    expect(page.locator("html")).to_have_attribute("data-ready", "true")


def confirm_dialogs(page: Page) -> list[bool]:
    """Answer each confirm() with the next answer the test appends (accept or dismiss)."""
    answers: list[bool] = []

    def answer(dialog: Dialog) -> None:
        assert dialog.type == "confirm", dialog.message
        dialog.accept() if answers.pop(0) else dialog.dismiss()

    page.on("dialog", answer)
    return answers


def job_state(page: Page) -> object:
    return expect(page.locator("#job-live h1 .state"))


def finished(server: ServerProcess, timeout: float = 60, **spec: object) -> dict:
    """Submit a job through the API and wait for it to succeed."""
    job = submit(server, **spec)
    with server.client() as c:
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] in ("succeeded", "failed", "stopped"),
                 timeout=timeout, what=f"job {job['id']} ended")
        job = c.get(f"/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    return job


def curve(scale: float) -> list[str]:
    return [PY, "-c", f"import json\nfor i in range(20): print(json.dumps(dict(metric='loss', value={scale}/(i+1), step=i)))"]
