"""The web UI in a real browser: Playwright driving Debian's Chromium against a real server.

One server and one browser for the module; each test is a scenario a person
would go through. Waits are Playwright's (expect, wait_for_function), never sleeps.
"""
from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
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
    srv = ServerProcess(tmp_path_factory.mktemp("web-browser") / "home",
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


def test_a_bad_token_is_refused_at_sign_in(browser: Browser, server: ServerProcess) -> None:
    page = browser.new_page()
    page.goto(f"{server.url}/ui/login")
    page.fill("input[name=token]", "not-a-token")
    page.click("button.primary")
    expect(page.locator(".field-error")).to_have_text("unknown token")
    page.close()


def test_form_errors_show_beside_their_field(page: Page, server: ServerProcess) -> None:
    page.goto(f"{server.url}/ui/new")
    page.fill("#f-max_runtime", "soon")
    page.click("button[type=submit]")  # checked in the browser: nothing is sent
    expect(page.locator('[data-error-for="command"]')).to_have_text("the command is empty")
    expect(page.locator('[data-error-for="max_runtime"]')).to_contain_text("not a duration")
    page.fill("#f-command", "echo hi")
    page.fill("#f-max_runtime", "1h")
    page.fill("#f-resources\\.gpus", "1")  # valid here, but this server has no GPU: the API's error.field says so
    page.click("button[type=submit]")
    error = page.locator('[data-error-for="resources.gpus"]')
    expect(error).to_contain_text("asks for 1 GPU(s) but this platform has 0")
    expect(page.locator('.field[data-field="resources.gpus"]')).to_have_class("field invalid")
    expect(page).to_have_url(f"{server.url}/ui/new")


def test_a_job_from_the_form_goes_live_in_the_table_and_its_chart_grows(page: Page, server: ServerProcess) -> None:
    page.goto(f"{server.url}/ui/new")
    page.fill("#f-name", "curve")
    page.fill("#f-command", CURVE)
    page.fill("#f-env", "SEED=1")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server.url}/ui/jobs/1")
    page.goto(f"{server.url}/ui/jobs")  # the table follows the job without a reload
    row = page.locator('tr[data-job-id="1"]')
    expect(row.locator(".name")).to_have_text("curve")
    expect(row).to_have_attribute("data-state", "running")

    row.locator(".name a").click()
    job_state(page).to_have_attribute("data-state", "running")
    page.wait_for_function("() => (window.modelyard.charts.loss?.data[0].length || 0) >= 2")
    first = page.evaluate("window.modelyard.charts.loss.data[0].length")
    page.wait_for_function("n => window.modelyard.charts.loss.data[0].length > n + 3", arg=first)
    expect(page.locator("#log .ln").last).to_contain_text("step")

    toast = page.locator("#toasts .toast", has_text="Job #1 curve finished")  # the notice of its end
    expect(toast).to_be_visible()
    job_state(page).to_have_attribute("data-state", "succeeded")
    page.wait_for_function("() => window.modelyard.charts.loss?.data[0].length === 32")
    expect(page.locator("table.attempts tr[data-attempt='1']")).to_contain_text("0")  # exit code

    page.select_option("#x-axis", "epoch")
    page.wait_for_function("() => window.modelyard.charts.loss?.data[0].length === 4")
    page.select_option("#x-axis", "step")
    page.wait_for_function("() => window.modelyard.charts.loss?.data[0].length === 32")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job-page.png"), full_page=True)


def test_stop_and_restart_with_the_buttons_after_confirming(page: Page, server: ServerProcess) -> None:
    job = submit(server, name="sleeper", command=SLEEPER)
    page.goto(f"{server.url}/ui/jobs/{job['id']}")
    job_state(page).to_have_attribute("data-state", "running")
    expect(page.locator("#log .ln").first).to_have_text("up")

    answers = confirm_dialogs(page)
    answers.append(False)  # changing one's mind stops nothing
    page.click("button[data-action=stop]")
    page.wait_for_function("() => !document.querySelector('button[data-action=stop]').disabled")
    assert not answers
    answers.append(True)
    page.click("button[data-action=stop]")
    job_state(page).to_have_attribute("data-state", "stopped")
    expect(page.locator("#toasts .toast", has_text=f"Job #{job['id']} sleeper was stopped")).to_be_visible()

    answers.append(True)
    page.click("button[data-action=restart]")
    job_state(page).to_have_attribute("data-state", "running")
    expect(page.locator("table.attempts tr[data-attempt='2']")).to_contain_text("running")
    expect(page.locator("table.attempts tr[data-attempt='1']")).to_contain_text("stopped")
    expect(page.locator("#log-attempt")).to_have_value("2")

    answers.append(True)
    page.click("button[data-action=stop]")
    job_state(page).to_have_attribute("data-state", "stopped")


def test_queue_page_shows_what_waits_for_which_resource(page: Page, server: ServerProcess) -> None:
    holder = submit(server, name="holder", command=SLEEPER, resources={"cpus": 3})
    waiter = submit(server, name="waiter", command=SLEEPER, resources={"cpus": 2})
    page.goto(f"{server.url}/ui/queue")
    # "running", not just listed: a stop sent while the job is still starting can race its
    # starting -> running change and be answered 409 "try again", leaving the holder running
    expect(page.locator("#running tr", has_text="holder")).to_contain_text("running")
    expect(page.locator("#waiting tr", has_text="waiter")).to_contain_text("waits for cpus: asks 2, 1 free")
    stop(server, holder["id"])
    # live: the waiter starts when the CPUs free up
    expect(page.locator("#running tr", has_text="waiter")).to_contain_text("running")
    stop(server, waiter["id"])


def test_another_users_job_is_not_reachable(browser: Browser, server: ServerProcess) -> None:
    with server.client() as admin:
        bob_token = admin.post("/users", json={"name": "bob"}).json()["token"]
    page = sign_in(browser, server, bob_token, width=390)  # and at a phone's width
    response = page.goto(f"{server.url}/ui/jobs/1")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("404 · Not found")
    page.goto(f"{server.url}/ui/jobs")
    expect(page.locator("td.empty")).to_contain_text("No jobs")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing spills sideways
    page.context.close()


def test_a_long_log_loads_its_tail_first_and_earlier_ranges_on_scroll(page: Page, server: ServerProcess) -> None:
    job = submit(server, name="chatty", command=[PY, "-c", "for i in range(20000): print('line', i)"])
    with server.client() as c:
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded", what="chatty job done")
    page.goto(f"{server.url}/ui/jobs/{job['id']}")
    lines = page.locator("#log .ln")
    expect(lines.last).to_have_text("line 19999")
    expect(lines.first).to_have_text("line 19000")  # one range (1000 lines), not 20,000
    page.locator("#log").evaluate("el => el.scrollTop = 0")
    expect(lines.first).to_have_text("line 18000")  # scrolling up fetched the range before it
    expect(lines.last).to_have_text("line 19999")
