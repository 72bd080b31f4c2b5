"""The web UI in a real browser: Playwright driving Debian's Chromium against a real server.

One server and one browser for the module (tests/browser.py); each test is a scenario a person
would go through. Waits are Playwright's (expect, wait_for_function), never sleeps.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from conftest import wait_for
from servers import ServerProcess
from browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, CURVE, PY, SLEEPER, browser, confirm_dialogs, curve, finished, goto_ready, job_state, page,
    playwright, server, sign_in, stop, submit,
)
from wheels import local_requirements, make_wheel

def test_a_bad_token_is_refused_at_sign_in(browser: Browser, server: ServerProcess) -> None:
    page = browser.new_page()
    page.goto(f"{server.url}/ui/login")
    page.fill("input[name=token]", "not-a-token")
    page.click("button.primary")
    expect(page.locator(".field-error")).to_have_text("unknown token")
    page.close()


def test_form_errors_show_beside_their_field(page: Page, server: ServerProcess) -> None:
    goto_ready(page, f"{server.url}/ui/new")
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
    goto_ready(page, f"{server.url}/ui/new")
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
    page.screenshot(path=str(ARTIFACTS / "job-page-live.png"), full_page=True)


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
        bob_token = admin.post("/users", json={"name": "bob", "no_isolation": True}).json()["token"]
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


# -- charts: overlays, a million points, zoom ----------------------------------------------------

# one metric line per point, written in blocks (a job printing 1,000,000 lines one print() at a time
# spends most of its time in print); the supervisor reads them from the pipe like any job's output
MILLION = 1_000_000
BIG = [PY, "-c", (
    "import math, sys\n"
    f"n = {MILLION}\n"
    "for s in range(0, n, 10000):\n"
    "    sys.stdout.write(''.join('{\"metric\": \"big\", \"value\": %.4f, \"step\": %d}\\n'\n"
    "        % (math.sin(i / 20000) + (i * 7919 % 101) / 500, i) for i in range(s, min(n, s + 10000))))\n")]


def test_compare_with_overlays_other_jobs_on_one_chart(page: Page, server: ServerProcess) -> None:
    a = finished(server, name="run-a", command=curve(1))
    b = finished(server, name="run-b", command=curve(2))
    page.goto(f"{server.url}/ui/jobs/{a['id']}")
    page.wait_for_function("() => window.modelyard.charts.loss?.data[0].length === 20")
    assert page.evaluate("window.modelyard.charts.loss.series.length") == 2  # x and one job
    page.fill("#compare", str(b["id"]))
    page.press("#compare", "Enter")
    page.wait_for_function("() => window.modelyard.charts.loss?.series.length === 3")
    chart = page.evaluate("""() => { const u = window.modelyard.charts.loss;
        return {labels: u.series.slice(1).map((s) => s.label), data: u.data.map((d) => Array.from(d))}; }""")
    assert chart["labels"] == [f"#{a['id']} run-a", f"#{b['id']} run-b"]
    xs, ya, yb = chart["data"]
    assert xs == list(range(20))  # one x-axis, both jobs' points on it
    assert ya == pytest.approx([1 / (i + 1) for i in range(20)])
    assert yb == pytest.approx([2 / (i + 1) for i in range(20)])
    expect(page.locator('[data-chart="loss"] .u-legend')).to_contain_text("run-b")


def test_the_metric_picker_learns_a_new_metric_without_a_reload(page: Page, server: ServerProcess) -> None:
    page.goto(f"{server.url}/ui/jobs")
    expect(page.locator("#metric-pick option", has_text="fresh_metric")).to_have_count(0)
    job = submit(server, name="fresh", command=[PY, "-c", "import json; print(json.dumps(dict(metric='fresh_metric', "
                                                          "value=0.25, step=1)))"])
    expect(page.locator(f'tr[data-job-id="{job["id"]}"]')).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#metric-pick option", has_text="fresh_metric")).to_have_count(1)
    page.select_option("#metric-pick", "fresh_metric")  # and the column shows it
    expect(page.locator(f'tr[data-job-id="{job["id"]}"] td.num')).to_have_text("0.25")


@pytest.fixture(scope="module")
def big_job(server: ServerProcess) -> dict:
    return finished(server, name="million", command=BIG, timeout=120)


def test_a_million_point_series_draws_at_once_downsampled_to_the_chart_width(
        page: Page, server: ServerProcess, big_job: dict) -> None:
    with server.client() as c:  # all of it is stored: the chart is what is cut down, not the data
        assert c.get(f"/jobs/{big_job['id']}/metrics/window", params={"start": MILLION - 3, "max_points": 10}).json()[
            "big"][-1]["step"] == MILLION - 1
    page.goto(f"{server.url}/ui/jobs/{big_job['id']}")
    page.wait_for_function("() => (window.modelyard.charts.big?.data[0].length || 0) > 0", timeout=15_000)
    drawn_ms = page.evaluate("performance.now()")  # since navigation started
    chart = page.evaluate("""() => { const u = window.modelyard.charts.big;
        return {n: u.data[0].length, width: u.width, first: u.data[0][0], last: u.data[0].at(-1)}; }""")
    print(f"\n{MILLION} points: chart drawn {drawn_ms / 1000:.1f} s after navigation, {chart}")
    assert drawn_ms < 10_000
    assert chart["width"] / 2 <= chart["n"] <= 2 * chart["width"]  # downsampled by the server to the width
    assert chart["first"] == 0 and chart["last"] == MILLION - 1  # the whole run, ends kept


def test_dragging_across_a_chart_fetches_the_detail_of_that_range(page: Page, server: ServerProcess,
                                                                  big_job: dict) -> None:
    page.goto(f"{server.url}/ui/jobs/{big_job['id']}")
    page.wait_for_function("() => (window.modelyard.charts.big?.data[0].length || 0) > 0", timeout=15_000)
    overview = page.evaluate("Array.from(window.modelyard.charts.big.data[0])")
    box = page.locator('[data-chart="big"] .u-over').bounding_box()
    assert box is not None
    left, right, y = box["x"] + box["width"] * 0.40, box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2
    with page.expect_response(lambda r: "/metrics/window?" in r.url) as window:
        page.mouse.move(left, y)
        page.mouse.down()
        page.mouse.move((left + right) / 2, y, steps=3)
        page.mouse.move(right, y, steps=3)
        page.mouse.up()
    assert window.value.ok and "x=step" in window.value.url
    expect(page.locator("#reset-zoom")).to_be_visible()
    # the chart shows the range it fetched: its x-scale is the selection, its points all inside it
    page.wait_for_function("""() => { const u = window.modelyard.charts.big, [lo, hi] = window.modelyard.metricCharts.zoom;
        const near = (a, b) => Math.abs(a - b) < 1;
        return near(u.scales.x.min, lo) && near(u.scales.x.max, hi) && u.data[0][0] >= lo && u.data[0].at(-1) <= hi; }""")
    lo, hi = page.evaluate("window.modelyard.metricCharts.zoom")
    assert 0.35 * MILLION < lo < hi < 0.5 * MILLION
    before = sum(lo <= x <= hi for x in overview)
    after = page.evaluate("window.modelyard.charts.big.data[0].length")
    print(f"\nzoom on steps {lo:.0f}..{hi:.0f}: {before} points of the overview, {after} after the fetch")
    assert after > 3 * before  # the range's detail, not the overview stretched

    page.click("#reset-zoom")  # back to the whole run
    expect(page.locator("#reset-zoom")).to_be_hidden()
    page.wait_for_function(f"() => window.modelyard.charts.big.data[0].at(-1) === {MILLION - 1}")


# -- outputs, clone with resume --------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 16
WRITER = [PY, "-c", (
    "import os, pathlib\n"
    "prev = pathlib.Path(os.environ.get('MODELYARD_RESUME_DIR') or '/nonexistent', 'model.bin')\n"
    "print(f'resumed from {prev.stat().st_size} bytes' if prev.exists() else 'fresh start', flush=True)\n"
    "pathlib.Path(os.environ['MODELYARD_OUTPUT_DIR'], 'model.bin').write_bytes(bytes(range(256)) * 16)\n")]


@pytest.fixture(scope="module")
def writer_job(server: ServerProcess) -> dict:
    return finished(server, name="writer", command=WRITER)


def test_an_output_downloads_with_its_bytes(page: Page, server: ServerProcess, writer_job: dict) -> None:
    page.goto(f"{server.url}/ui/jobs/{writer_job['id']}")
    link = page.locator(".outputs a", has_text="model.bin")
    expect(link).to_have_attribute("href", f"/api/v1/jobs/{writer_job['id']}/outputs/model.bin?attempt=1")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "model.bin"
    assert Path(download.value.path()).read_bytes() == PAYLOAD


def test_clone_with_resume_starts_a_new_job_from_the_sources_outputs(page: Page, server: ServerProcess,
                                                                       writer_job: dict) -> None:
    goto_ready(page, f"{server.url}/ui/jobs/{writer_job['id']}")
    expect(page.locator("#clone-resume")).to_be_checked()  # an ended job: resuming is the usual wish
    answers = confirm_dialogs(page)
    answers.append(True)
    page.click("button[data-action=clone]")
    expect(page).not_to_have_url(f"{server.url}/ui/jobs/{writer_job['id']}")
    clone_id = int(page.url.rsplit("/", 1)[1])
    resumed = page.locator(".spec dt", has_text="resumed from")
    expect(resumed.locator("+ dd a")).to_have_attribute("href", f"/ui/jobs/{writer_job['id']}")
    with server.client() as c:
        clone = c.get(f"/jobs/{clone_id}").json()
    assert clone["resume_from"] == writer_job["id"] and clone["name"] == "writer (resumed)"
    # after the supervisor's own line saying where it resumes from
    expect(page.locator("#log .ln", has_text="resumed from")).to_have_text([f"resumed from {len(PAYLOAD)} bytes"])
    job_state(page).to_have_attribute("data-state", "succeeded")


# -- datasets --------------------------------------------------------------------------------------

def test_datasets_list_and_detail(browser: Browser, server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "rows.csv"
    source.write_text("x,label\n" + "".join(f"{i},{i % 3}\n" for i in range(40)))
    with server.client() as c:  # a server-side source: an admin may import one
        r = c.post("/datasets", json={"name": "rows", "source": str(source), "split": "train=0.75,val=0.25"})
        assert r.status_code == 201, r.text
        version = r.json()
    user = finished(server, name="reads-rows", command=[PY, "-c", "print('ok')"], dataset="rows")

    for width in (1280, 390):
        page = sign_in(browser, server, server.token, width=width)
        page.click("nav a:text('Datasets')")
        expect(page).to_have_url(f"{server.url}/ui/datasets")
        row = page.locator('tr[data-dataset="rows"]')
        expect(row).to_contain_text(version["version"][:8])
        expect(row).to_contain_text("train 30 · val 10")
        expect(row.locator("td").nth(3)).to_have_text(version["format"])
        row.locator("a", has_text="rows").click()
        expect(page).to_have_url(f"{server.url}/ui/datasets/rows")
        card = page.locator(f'section[data-version="{version["version"]}"]')
        expect(card.locator("h2")).to_contain_text(version["ref"])
        expect(card.locator("dl.spec")).to_contain_text(f"{source} (csv)")
        expect(card.locator("table.splits tbody tr")).to_have_text([re.compile(r"train\s*0\.75\s*30"),
                                                                    re.compile(r"val\s*0\.25\s*10")])
        expect(card.locator(f'table.jobs tr[data-job-id="{user["id"]}"]')).to_contain_text("reads-rows")
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing spills sideways
        page.context.close()


# -- the README's screenshot -----------------------------------------------------------------------

DIGITS = Path(__file__).resolve().parent.parent / "examples" / "digits-cnn" / "train.py"
DOCS_SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "job-page.png"


def test_a_real_training_run_on_its_job_page(page: Page, server: ServerProcess) -> None:
    """The digits CNN trained for 4 epochs, watched live; its page is the README's screenshot
    (test-artifacts/job-page.png; with MODELYARD_UPDATE_SCREENSHOT=1 also docs/job-page.png)."""
    job = submit(server, name="digits-cnn", command=[PY, str(DIGITS), "--epochs", "4"],
                 resources={"cpus": 2, "memory": "2G"})
    assert "MODELYARD_DATA_DIR" not in job.get("env", {})  # sklearn's bundled digits
    page.goto(f"{server.url}/ui/jobs/{job['id']}")
    job_state(page).to_have_attribute("data-state", "running", timeout=30_000)
    toast = page.locator("#toasts .toast", has_text=f"Job #{job['id']} digits-cnn finished")
    expect(toast).to_be_visible(timeout=180_000)  # ~20 s on an idle 2-core machine, 70 s on a busy one
    toast.locator("button.toast-close").click()  # the notice goes at once when dismissed
    expect(page.locator("#toasts .toast")).to_have_count(0)

    job_state(page).to_have_attribute("data-state", "succeeded")
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"):
        page.wait_for_function(f"() => (window.modelyard.charts.{name}?.data[0].length || 0) >= 4")
    # Every job has a sample as its command starts and one as it ends, however fast the machine
    # (this one ends in under the 5 s sampling interval on an idle one): two points at least.
    page.wait_for_function("() => (window.modelyard.systemCharts.memory?.data[0].length || 0) >= 2"
                           " && window.modelyard.systemCharts.cpu")
    expect(page.locator(".outputs")).to_contain_text("latest.pt")
    expect(page.locator("#log .ln").last).to_contain_text("done: final val_accuracy")
    page.locator("#log").evaluate("el => el.scrollTop = el.scrollHeight")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "job-page.png"), full_page=True)
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOT") == "1":
        page.screenshot(path=str(DOCS_SCREENSHOT), full_page=True)


def test_the_form_offers_environments_and_puts_their_errors_beside_the_field(
        page: Page, server: ServerProcess, tmp_path: Path) -> None:
    make_wheel(tmp_path / "wheels")
    req = local_requirements(tmp_path / "wheels", "tinypkg==1.0")
    with server.client() as c:
        made = c.post("/environments", json={"name": "tiny-env", "requirements": req, "description": "one wheel"})
        assert made.status_code == 201, made.text
    goto_ready(page, f"{server.url}/ui/new")
    page.fill("#f-command", "python -c 'import tinypkg; print(\"value\", tinypkg.VALUE)'")
    page.select_option("#f-environment", "tiny-env")
    page.fill("#f-image", "localhost/train:1")
    page.click("button[type=submit]")  # two of the three: checked in the browser, nothing is sent
    expect(page.locator('[data-error-for="image"]')).to_contain_text("give one of a named environment, an image")
    page.select_option("#f-environment", "")
    page.fill("#f-image", "not an image")
    page.click("button[type=submit]")  # the API's error.field puts it beside the image field
    expect(page.locator('[data-error-for="image"]')).to_contain_text("is not an image reference")
    page.fill("#f-image", "")
    page.select_option("#f-environment", "tiny-env")
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/ui/jobs/\d+$"))
    expect(page.locator(".runs-in")).to_contain_text("environment tiny-env")
    expect(page.locator(".runs-in pre.requirements")).to_contain_text("tinypkg==1.0")
    job_state(page).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#log .ln", has_text="value 42")).to_have_count(1)


def test_a_multi_node_jobs_log_tags_each_line_and_picks_one_node(page: Page, server: ServerProcess) -> None:
    """Two node ranks' reports into one attempt placed by hand (no executor here runs two nodes)."""
    import httpx

    from modelyard.config import Settings
    from modelyard.jobs import JobSpec, Resources
    from modelyard.jobs.nodes import NodeSlice
    from modelyard.db import Database
    from modelyard.db import jobs as J
    from modelyard.db import users as U

    settings = Settings.from_env({"MODELYARD_HOME": str(server.home)})
    db = Database(settings.database_url)
    try:
        with server.client() as c:
            user = U.get_user_by_name(db, c.get("/me").json()["name"])
        # more GPUs than the server has: its own scheduler never places it
        job = J.create_job(db, user=user, spec=JobSpec(name="two-nodes", command=["true"], nodes=2,
                                                       resources=Resources(gpus=8)), snapshot_key=None)
        _, attempt = J.place(db, job.id, token="two-nodes-token", executor="by-hand",
                             slices=[NodeSlice("node-a"), NodeSlice("node-b")])
    finally:
        db.dispose()
    url = f"{server.url}/api/v1/attempts/{attempt.id}/report"
    auth = {"Authorization": "Bearer two-nodes-token"}
    for rank in (0, 1):
        body = {"seq": 1, "rank": rank, "logs": [[1.0, "stdout", f"hello from {rank}"], [2.0, "stdout", f"bye {rank}"]],
                "events": [{"type": "started", "t": 1.0},
                           {"type": "exited", "t": 3.0, "exit_code": 0, "reason": "exit_zero"}], "final": True}
        assert httpx.post(url, json=body, headers=auth).status_code == 200
    page.goto(f"{server.url}/ui/jobs/{job.id}")
    lines = page.locator("#log .ln")
    expect(lines).to_have_count(4)
    expect(lines.first).to_have_text("[node 0] hello from 0")
    expect(page.locator("#log-node")).to_be_visible()
    page.select_option("#log-node", "1")
    expect(lines).to_have_count(2)
    expect(lines.first).to_have_text("hello from 1")  # one node's lines: no tag needed
    expect(lines.last).to_have_text("bye 1")
