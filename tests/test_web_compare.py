"""Comparing jobs in the browser and the CLI, against one real server: pick jobs in the jobs table,
the compare page's tables and overlaid curves, its CSV and JSON links, ``modelyard compare``.
Takes the README's screenshot: test-artifacts/compare.png on every run; with
MODELYARD_UPDATE_SCREENSHOT=1 also docs/compare.png."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, PY, browser, finished, goto_ready, page, playwright, server, sign_in, stop, submit,
)
from conftest import wait_for
from serverproc import cli, clean_env
from servers import ServerProcess

DOCS = Path(__file__).resolve().parent.parent / "docs"
# a loss that falls as SCALE/(i+1) (its best, the last point, at step 19) and an accuracy
TRAIN = [PY, "-c", "import json, os\ns = float(os.environ['SCALE'])\nfor i in range(20):\n"
         " print(json.dumps(dict(metric='loss', value=s/(i+1), step=i)))\n"
         " print(json.dumps(dict(metric='accuracy', value=1-s/(i+2), step=i)))\n"]


@pytest.fixture(scope="module")
def jobs(server: ServerProcess) -> list[dict]:
    runs = [("lr-0.1", 1.0, {"lr": 0.1, "opt": "adam"}, "1"), ("lr-0.01", 0.5, {"lr": 0.01, "opt": "adam"}, "2"),
            ("lr-0.001", 0.8, {"lr": 0.001, "opt": "adam", "warmup": 100}, "3")]
    return [finished(server, name=name, command=TRAIN, params=params, env={"SEED": seed, "SCALE": str(scale)},
                     tags=["sweep"]) for name, scale, params, seed in runs]


def test_jobs_picked_in_the_table_open_side_by_side_with_their_curves(page: Page, server: ServerProcess,
                                                                     jobs: list[dict]) -> None:
    goto_ready(page, f"{server.url}/ui/jobs")
    button = page.locator("#compare-selected")
    expect(button).to_be_disabled()
    page.check(f'tr[data-job-id="{jobs[0]["id"]}"] input.pick')
    expect(button).to_be_disabled()  # one job is nothing to compare
    page.check(f'tr[data-job-id="{jobs[1]["id"]}"] input.pick')
    # a refresh of the rows (every 10 s, or on any job's event) keeps what was picked
    page.evaluate("""() => new Promise((resolve) => {
        document.body.addEventListener("htmx:afterSwap", resolve, { once: true });
        window.htmx.trigger("#job-table", "refresh"); })""")
    expect(page.locator(f'tr[data-job-id="{jobs[1]["id"]}"] input.pick')).to_be_checked()
    page.check(f'tr[data-job-id="{jobs[2]["id"]}"] input.pick')
    expect(button).to_have_text("Compare (3)")
    button.click()
    ids = ",".join(str(j["id"]) for j in jobs)
    expect(page).to_have_url(f"{server.url}/ui/compare?ids={ids}")
    expect(page.locator("html")).to_have_attribute("data-ready", "true")

    # parameters side by side, the differing ones marked
    expect(page.locator('#compare-params tr[data-param="lr"]')).to_have_class("differs")
    expect(page.locator('#compare-params tr[data-param="lr"] td')).to_have_text(["0.1", "0.01", "0.001"])
    expect(page.locator('#compare-params tr[data-param="opt"]')).not_to_have_class("differs")
    expect(page.locator('#compare-params tr[data-param="warmup"] td')).to_have_text(["-", "-", "100"])
    expect(page.locator('#compare-spec tr[data-field="env.SEED"] td')).to_have_text(["1", "2", "3"])
    expect(page.locator('#compare-spec tr[data-field="env.SCALE"] td')).to_have_text(["1.0", "0.5", "0.8"])
    expect(page.locator('#compare-spec tr[data-field="command"]')).to_have_count(0)  # the same in all three
    # last and best: a loss's best is its minimum (the last point here), an accuracy's its maximum
    expect(page.locator('#compare-metrics tr[data-metric="loss"] td .best')).to_have_text(["0.05", "0.025", "0.04"])
    expect(page.locator('#compare-metrics tr[data-metric="loss"] th')).to_contain_text("best = min")
    expect(page.locator('#compare-metrics tr[data-metric="accuracy"] th')).to_contain_text("best = max")
    expect(page.locator('#compare-jobs tr[data-row="duration"] td')).to_have_count(3)

    # one chart per metric, one series per job, the legend naming each job
    page.wait_for_function("() => window.modelyard.charts.loss?.series.length === 4 "
                           "&& window.modelyard.charts.accuracy?.series.length === 4")
    labels = page.evaluate("() => window.modelyard.charts.loss.series.slice(1).map((s) => s.label)")
    assert labels == [f"#{j['id']} {j['name']}" for j in jobs]
    ys = page.evaluate("() => window.modelyard.charts.loss.data.slice(1).map((d) => Array.from(d))")
    assert ys[1] == pytest.approx([0.5 / (i + 1) for i in range(20)])
    page.wait_for_function("() => document.fonts.ready.then(() => true)")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "compare.png"))  # 1280x900: the viewport, tables and curves
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "compare.png", DOCS / "compare.png")

    page.uncheck('#metric-choice input[value="accuracy"]')  # only the chosen metrics are charted
    expect(page.locator('[data-chart="accuracy"]')).to_have_count(0)
    expect(page.locator('[data-chart="loss"]')).to_have_count(1)


def test_the_csv_and_json_links_download_what_the_api_says(page: Page, server: ServerProcess, jobs: list[dict],
                                                          tmp_path: Path) -> None:
    ids = ",".join(str(j["id"]) for j in jobs[:2])
    goto_ready(page, f"{server.url}/ui/compare?ids={ids}")
    with server.client() as c:
        api_csv = c.get("/compare.csv", params={"ids": ids}).content
        api_json = c.get("/compare", params={"ids": ids}).json()
    with page.expect_download() as got:
        page.click("#compare-csv")
    assert got.value.suggested_filename == f"compare-{ids.replace(',', '-')}.csv"
    assert Path(got.value.path()).read_bytes() == api_csv
    text = api_csv.decode()
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["name"] for r in rows] == ["lr-0.1", "lr-0.01"] and [r["param.lr"] for r in rows] == ["0.1", "0.01"]
    assert [float(r["loss.best"]) for r in rows] == pytest.approx([0.05, 0.025])
    with page.expect_download() as got:
        page.click("#compare-json")
    downloaded = json.loads(Path(got.value.path()).read_text())
    assert downloaded["ids"] == api_json["ids"] and downloaded["metrics"] == api_json["metrics"]
    # and the page's own data, as every page's, is the same comparison
    shown = page.request.get(f"{server.url}/ui/compare?ids={ids}&format=json").json()
    assert {k: shown[k] for k in api_json if k != "jobs"} == {k: api_json[k] for k in api_json if k != "jobs"}
    assert [j["id"] for j in shown["jobs"]] == [j["id"] for j in api_json["jobs"]]


def test_the_page_follows_a_compared_job_that_runs(page: Page, server: ServerProcess, jobs: list[dict]) -> None:
    job = submit(server, name="still-running", params={"lr": 0.5}, command=[
        PY, "-u", "-c", "import json, time; print(json.dumps(dict(metric='loss', value=2.0, step=0))); time.sleep(120)"])
    with server.client() as c:  # its first point is in: the page starts with it
        wait_for(lambda: c.get(f"/jobs/{job['id']}/metrics").json().get("loss"), timeout=30, what="its first point")
    goto_ready(page, f"{server.url}/ui/compare?ids={jobs[0]['id']},{job['id']}")
    state = page.locator("#compare-jobs tbody tr").first.locator("td").nth(1)
    expect(state).to_have_text("▶ running")
    page.wait_for_function("() => window.modelyard.charts.loss?.series.length === 3")
    stop(server, job["id"])
    expect(state).to_have_text("■ stopped")  # swapped in on the job's event, without a reload
    expect(page.locator('#compare-metrics tr[data-metric="loss"] td .best').nth(1)).to_have_text("2")


def test_a_bad_or_foreign_id_shows_why_on_the_page(page: Page, server: ServerProcess, jobs: list[dict]) -> None:
    goto_ready(page, f"{server.url}/ui/compare?ids=3,x")
    expect(page.locator("main .message")).to_have_text("'x' is not a job id")
    with server.client() as c:
        bob = c.post("/users", json={"name": "bob-compare", "no_isolation": True}).json()["token"]
    theirs = sign_in(page.context.browser, server, bob)
    try:
        r = theirs.goto(f"{server.url}/ui/compare?ids={jobs[0]['id']}")
        assert r is not None and r.status == 404
        expect(theirs.locator("main h1")).to_contain_text("Not found")
    finally:
        theirs.context.close()


def test_the_cli_compares_as_tables_csv_and_json(server: ServerProcess, jobs: list[dict], tmp_path: Path) -> None:
    env = clean_env(tmp_path / "cli-home", MODELYARD_URL=server.url, MODELYARD_TOKEN=server.token,
                    COLUMNS="200")
    ids = [str(j["id"]) for j in jobs]
    done = cli(["compare", *ids], env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for words in ("parameters", "spec differences", "metrics: last / best", "loss (min)", "accuracy (max)",
                  "env.SEED", "0.05 / 0.05 @19", f"#{jobs[2]['id']} lr-0.001"):
        assert words in out, out
    target = tmp_path / "runs.csv"
    done = cli(["compare", *ids, "--csv", str(target), "--json"], env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"]["differ"] == ["lr", "warmup"]
    with server.client() as c:
        assert target.read_bytes() == c.get("/compare.csv", params={"ids": ",".join(ids)}).content
    bad = cli(["compare", ids[0], "999999"], env)
    assert bad.returncode != 0 and "job 999999 not found" in bad.stderr
