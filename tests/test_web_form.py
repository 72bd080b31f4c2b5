"""The new-job form in a real browser: code from a folder or an archive (uploaded with a progress
bar, .gitignore honoured) that the job then runs, the code of an earlier job, parameters and tags,
upload errors beside the code field, and a next round of a job with new code that resumes from
its outputs. Takes the README's screenshot of the form (test-artifacts/new-job-form.png; with
MODELYARD_UPDATE_SCREENSHOT=1 also docs/new-job-form.png)."""
from __future__ import annotations

import os
import re
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from browser import ARTIFACTS, browser, goto_ready, page, playwright, sign_in  # noqa: F401 (fixtures)
from servers import ServerProcess

PY = sys.executable
DOCS = Path(__file__).resolve().parent.parent / "docs"
# lists the files it was given, and what it resumes from, then leaves a checkpoint
TRAIN = """import os, pathlib
print('files', ' '.join(sorted(str(p) for p in pathlib.Path('.').rglob('*') if p.is_file())))
import helper
print('version', helper.VERSION)
resume = os.environ.get('MODELYARD_RESUME_DIR')
if resume:
    print('resumed from', (pathlib.Path(resume) / 'ckpt.txt').read_text())
(pathlib.Path(os.environ['MODELYARD_OUTPUT_DIR']) / 'ckpt.txt').write_text('step 100 of v' + str(helper.VERSION))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("form") / "home", env={
        "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", "MODELYARD_MAX_SNAPSHOT": "256K"}).start()
    yield srv
    srv.stop()


def project(root: Path, version: int) -> Path:
    (root / "data").mkdir(parents=True)
    (root / "train.py").write_text(TRAIN)
    (root / "helper.py").write_text(f"VERSION = {version}\n")
    (root / ".gitignore").write_text("data/\n*.ckpt\n")
    (root / "data" / "big.bin").write_bytes(b"d" * 300_000)  # over the limit: only .gitignore lets it pass
    (root / "old.ckpt").write_text("stale")
    return root


def submit_watching_the_upload(page: Page, done: str) -> None:
    """Submit, holding POST /api/v1/jobs (sent once the upload is in) while the form shows the upload's end."""
    held: list[Route] = []
    jobs = re.compile(r".*/api/v1/jobs$")
    page.route(jobs, lambda route: held.append(route))
    with page.expect_request(lambda r: r.method == "POST" and jobs.match(r.url) is not None):
        page.click("button[type=submit]")
    expect(page.locator("#code-progress")).to_have_attribute("value", "100")
    expect(page.locator("#code-progress-text")).to_contain_text(done)
    expect(page).to_have_url(re.compile(r"/ui/new$"))  # still here: the spec waits for the test
    assert len(held) == 1
    held[0].continue_()
    page.unroute(jobs)


def log_line(page: Page, text: str) -> None:
    expect(page.locator("#log .ln", has_text=text)).to_have_count(1, timeout=60_000)


def job_of(page: Page, server: ServerProcess) -> dict:
    expect(page).to_have_url(re.compile(r"/ui/jobs/\d+$"))
    with server.client() as c:
        return c.get(f"/jobs/{int(page.url.rsplit('/', 1)[1])}").json()


@pytest.fixture(scope="module")
def folder_job(browser, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict:  # noqa: F811
    """A job submitted from the form with a folder, two parameters and tags (the screenshot's form)."""
    code = project(tmp_path_factory.mktemp("code") / "mnist", version=1)
    page = sign_in(browser, server, server.token)  # noqa: F811
    goto_ready(page, f"{server.url}/ui/new")
    page.fill("#f-name", "mnist-from-folder")
    page.fill("#f-command", f"{PY} train.py")
    page.set_input_files("#f-code-folder", code)
    expect(page.locator("input[name=code][value=folder]")).to_be_checked()  # choosing a folder picks it
    page.locator("[name=param-name]").last.fill("lr")
    page.locator("[name=param-value]").last.fill("0.01")
    page.click("#add-param")
    page.locator("[name=param-name]").last.fill("optimizer")
    page.locator("[name=param-value]").last.fill("adam")
    page.fill("#f-tags", "baseline, mnist")
    page.fill("#f-metric_patterns", "keras\nacc=(?P<acc>[0-9.]+), seen")
    page.fill("#f-command", "python train.py")  # as a reader would type it; the test's interpreter runs it
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "new-job-form.png"), full_page=True)
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOT") == "1":  # the README's
        page.screenshot(path=str(DOCS / "new-job-form.png"), full_page=True)
    page.fill("#f-command", f"{PY} train.py")
    submit_watching_the_upload(page, "100%: 3 files")
    job = job_of(page, server)
    log_line(page, "files .gitignore helper.py train.py")  # data/ and *.ckpt stayed home
    log_line(page, "version 1")
    expect(page.locator("#job-live h1 .state")).to_have_attribute("data-state", "succeeded")
    page.context.close()
    return job


def test_a_folder_from_the_form_runs_with_its_parameters_and_tags(folder_job: dict) -> None:
    assert folder_job["params"] == {"lr": 0.01, "optimizer": "adam"}
    # one pattern a line, kept whole: the regex's own comma and space are not separators
    assert folder_job["metric_patterns"] == ["keras", "acc=(?P<acc>[0-9.]+), seen"]
    assert folder_job["tags"] == ["baseline", "mnist"]
    assert folder_job["snapshot"].startswith("snapshots/")


def test_a_zip_from_the_form_runs(page: Page, server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    code = project(tmp_path / "proj", version=2)
    archive = tmp_path / "proj.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in ("train.py", "helper.py", ".gitignore", "old.ckpt"):
            zf.write(code / f, f"proj/{f}")
    goto_ready(page, f"{server.url}/ui/new")
    page.fill("#f-command", f"{PY} train.py")
    page.set_input_files("#f-code-archive", archive)
    submit_watching_the_upload(page, "100%: 3 files")
    job_of(page, server)
    log_line(page, "files .gitignore helper.py train.py")
    log_line(page, "version 2")


def test_the_code_of_an_earlier_job(page: Page, server: ServerProcess, folder_job: dict) -> None:  # noqa: F811
    goto_ready(page, f"{server.url}/ui/new")
    page.fill("#f-command", f"{PY} train.py")
    page.select_option("#f-code-job", label=f"#{folder_job['id']} mnist-from-folder")
    expect(page.locator("input[name=code][value=job]")).to_be_checked()
    page.click("button[type=submit]")
    job = job_of(page, server)
    assert job["snapshot"] == folder_job["snapshot"]
    log_line(page, "version 1")


def test_upload_errors_show_beside_the_code_field(page: Page, server: ServerProcess, tmp_path: Path) -> None:  # noqa: F811
    goto_ready(page, f"{server.url}/ui/new")
    page.fill("#f-command", "true")
    page.check("input[name=code][value=folder]")
    page.click("button[type=submit]")  # checked in the browser: nothing chosen
    error = page.locator('[data-error-for="code"]')
    expect(error).to_have_text("choose a folder with files in it")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 this is no zip")
    page.set_input_files("#f-code-archive", bad)
    page.click("button[type=submit]")
    expect(error).to_contain_text("not a readable .zip archive")
    expect(page.locator('.field[data-field="code"]')).to_have_class(re.compile(r"\binvalid\b"))
    big = tmp_path / "big"
    big.mkdir()
    (big / "weights.bin").write_bytes(b"w" * 300_000)
    page.set_input_files("#f-code-folder", big)
    page.click("button[type=submit]")
    expect(error).to_contain_text("MODELYARD_MAX_SNAPSHOT")
    expect(page).to_have_url(f"{server.url}/ui/new")


def test_a_next_round_with_new_code_resumes_from_the_jobs_outputs(page: Page, server: ServerProcess,  # noqa: F811
                                                                   folder_job: dict, tmp_path: Path) -> None:
    goto_ready(page, f"{server.url}/ui/jobs/{folder_job['id']}")
    page.click("#clone-form")
    expect(page).to_have_url(f"{server.url}/ui/new?from={folder_job['id']}")
    expect(page.locator("html")).to_have_attribute("data-ready", "true")
    # filled from the job: its command, parameters, tags, its code, and its outputs to resume from
    expect(page.locator("#f-command")).to_have_value(f"{PY} train.py")
    expect(page.locator("[name=param-name]")).to_have_count(2)
    expect(page.locator("[name=param-value]").first).to_have_value("0.01")
    expect(page.locator("#f-tags")).to_have_value("baseline, mnist")
    expect(page.locator("#f-metric_patterns")).to_have_value("keras\nacc=(?P<acc>[0-9.]+), seen")
    expect(page.locator("input[name=code][value=job]")).to_be_checked()
    expect(page.locator("#f-resume")).to_be_checked()
    page.fill("#f-name", "mnist round 2")
    page.locator("[name=param-value]").first.fill("0.001")
    page.set_input_files("#f-code-folder", project(tmp_path / "mnist", version=3))
    page.click("button[type=submit]")
    job = job_of(page, server)
    assert job["resume_from"] == folder_job["id"] and job["snapshot"] != folder_job["snapshot"]
    assert job["params"] == {"lr": 0.001, "optimizer": "adam"} and job["tags"] == ["baseline", "mnist"]
    log_line(page, "version 3")
    log_line(page, "resumed from step 100 of v1")
    expect(page.locator(".spec dt", has_text="resumed from")).to_have_count(1)


def test_a_next_round_of_another_users_job_is_a_404(browser, server: ServerProcess, folder_job: dict) -> None:  # noqa: F811
    with server.client() as c:
        token = c.post("/users", json={"name": "mallory", "no_isolation": True}).json()["token"]
    page = sign_in(browser, server, token)  # noqa: F811
    r = page.goto(f"{server.url}/ui/new?from={folder_job['id']}")
    assert r is not None and r.status == 404
    goto_ready(page, f"{server.url}/ui/new")  # nor is the admin's job's code offered
    expect(page.locator("#f-code-job option")).to_have_count(0)
    page.context.close()


def test_parameter_and_tag_errors_show_beside_their_fields(page: Page, server: ServerProcess) -> None:  # noqa: F811
    goto_ready(page, f"{server.url}/ui/new")
    page.fill("#f-command", "true")
    page.locator("[name=param-value]").last.fill("0.1")
    page.click("button[type=submit]")  # checked in the browser: a value with no name
    expect(page.locator('[data-error-for="params"]')).to_have_text('the parameter with value "0.1" has no name')
    page.locator("[name=param-name]").last.fill("bad name!")
    page.click("button[type=submit]")  # the API's error.field puts it beside the parameters
    expect(page.locator('[data-error-for="params"]')).to_contain_text("bad name!")
    expect(page.locator('.field[data-field="params"]')).to_have_class(re.compile(r"\binvalid\b"))
    page.locator(".remove-param").last.click()
    expect(page.locator(".param-row")).to_have_count(0)
    page.fill("#f-tags", "-bad")
    page.click("button[type=submit]")
    expect(page.locator('[data-error-for="tags"]')).to_contain_text("tag '-bad'")
    page.fill("#f-tags", "")
    page.fill("#f-metric_patterns", "loss=(?P<loss>[0-9.]+")  # the API refuses a pattern that does not compile
    page.click("button[type=submit]")
    expect(page.locator('[data-error-for="metric_patterns"]')).to_contain_text("loss=(?P<loss>[0-9.]+")
    expect(page).to_have_url(f"{server.url}/ui/new")


def test_a_next_round_keeps_what_the_form_has_no_field_for(page: Page, server: ServerProcess) -> None:  # noqa: F811
    with server.client() as c:
        source = c.post("/jobs", json={"spec": {"command": ["true"], "name": "two-procs", "nproc_per_node": 2,
                                                "params": {"seed": 7}, "max_runtime": 5400, "env": {"A": "1"}}})
        assert source.status_code == 201, source.text
    source_id = source.json()["id"]
    goto_ready(page, f"{server.url}/ui/new?from={source_id}")
    expect(page.locator("#f-max_runtime")).to_have_value("90m")
    expect(page.locator("#f-env")).to_have_value("A=1")
    expect(page.locator("input[name=code][value=none]")).to_be_checked()  # it had no code
    page.click("button[type=submit]")
    job = job_of(page, server)
    assert job["nproc_per_node"] == 2 and job["params"] == {"seed": 7} and job["resume_from"] == source_id
    assert job["max_runtime"] == 5400 and job["env"] == {"A": "1"}
