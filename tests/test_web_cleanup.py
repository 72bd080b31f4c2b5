"""Removal and the disk page in a real browser: remove from the jobs table after confirming, remove
from the job page keeping the model, and the admin's disk page showing a job's bytes."""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from conftest import wait_for
from playwright.sync_api import Browser, Page, expect

from browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, PY, browser, confirm_dialogs, finished, goto_ready, page, playwright, server, sign_in,
)
from servers import ServerProcess

from modelyard.db.engine import Database
from modelyard.db.schema import attempts, log_lines

WRITER = [PY, "-c", "import os\nd = os.environ['MODELYARD_OUTPUT_DIR']\nos.makedirs(os.path.join(d, 'final'))\n"
          "open(os.path.join(d, 'ckpt.bin'), 'wb').write(b'c' * 54321)\n"
          "open(os.path.join(d, 'final', 'model.bin'), 'wb').write(b'm' * 10)\n"]


def test_a_job_is_removed_from_the_table_only_once_confirmed(page: Page, server: ServerProcess) -> None:
    job = finished(server, command=["true"], name="to-remove")
    goto_ready(page, f"{server.url}/ui/jobs")
    row = page.locator(f"tr[data-job-id='{job['id']}']")
    answers = confirm_dialogs(page)
    answers.append(False)  # changing one's mind removes nothing
    row.locator("button[data-action=remove]").click()
    expect(row.locator("button[data-action=remove]")).to_be_enabled()
    assert not answers
    with server.client() as c:
        assert c.get(f"/jobs/{job['id']}").status_code == 200
    answers.append(True)
    row.locator("button[data-action=remove]").click()
    expect(page.locator("#toasts .toast", has_text=f"Job #{job['id']} removed")).to_be_visible()
    expect(row).to_have_count(0)
    with server.client() as c:
        assert c.get(f"/jobs/{job['id']}").status_code == 404
    page.goto(f"{server.url}/ui/jobs/{job['id']}")
    expect(page.locator("h1")).to_have_text("404 · Not found")


def test_the_job_page_removes_all_but_the_model_and_says_so(page: Page, server: ServerProcess) -> None:
    job = finished(server, command=WRITER, name="keep-model")
    goto_ready(page, f"{server.url}/ui/jobs/{job['id']}")
    answers = confirm_dialogs(page)
    answers.append(True)
    page.click("button[data-action=remove-keep-final]")
    expect(page.locator(".message.removed")).to_contain_text("model kept")
    expect(page.locator("button[data-action=remove-keep-final]")).to_have_count(0)
    with server.client() as c:
        files = [f["path"] for f in c.get(f"/jobs/{job['id']}/outputs").json()["files"]]
    assert "ckpt.bin" not in files


def test_the_disk_page_shows_each_jobs_bytes_to_an_admin(page: Page, browser: Browser, server: ServerProcess) -> None:
    job = finished(server, command=WRITER, name="big")
    goto_ready(page, f"{server.url}/ui/admin/disk?refresh=true")
    cell = page.locator(f".disk-jobs tr[data-job-id='{job['id']}'] td[data-bytes]")
    expect(cell).to_have_count(1)
    assert int(cell.get_attribute("data-bytes") or 0) >= 54321 + 10
    expect(page.locator(".disk-summary")).to_contain_text("database")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "disk-page.png"), full_page=True)
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOT") == "1":  # the README's; a plain run leaves docs/ as it is
        page.screenshot(path=str(Path(__file__).parent.parent / "docs" / "disk-page.png"), full_page=True)
    with server.client() as c:
        token = c.post("/users", json={"name": "plain", "no_isolation": True}).json()["token"]
    plain = sign_in(browser, server, token)
    response = plain.goto(f"{server.url}/ui/admin/disk")
    assert response is not None and response.status == 403
    expect(plain.locator("nav a", has_text="Disk")).to_have_count(0)
    plain.context.close()


def test_a_log_moved_to_the_artifact_store_reads_by_range_on_the_page(page: Page, server: ServerProcess) -> None:
    job = finished(server, name="archived", command=[PY, "-c", "for i in range(5000): print('line', i)"])
    db = Database(f"sqlite:///{server.home / 'modelyard.db'}")
    try:
        def archived() -> bool:
            with db.read() as conn:
                rows = conn.execute(sa.select(sa.func.count()).select_from(log_lines).join(
                    attempts, attempts.c.id == log_lines.c.attempt_id).where(attempts.c.job_id == job["id"])).scalar_one()
            return rows == 0
        wait_for(archived, timeout=30, what="the log's lines to leave the db")
    finally:
        db.dispose()
    page.goto(f"{server.url}/ui/jobs/{job['id']}")
    lines = page.locator("#log .ln")
    expect(lines.last).to_have_text("line 4999")
    expect(lines.first).to_have_text("line 4000")  # the last range first, from the archive
    page.locator("#log").evaluate("el => el.scrollTop = 0")
    expect(lines.first).to_have_text("line 3000")  # the range before it, from the archive too
