"""The jobs table's parameter columns, sorting, filter box and tag chips, and tag editing on the
job page, in a real browser against a real server (README "Parameters and tags")."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Browser, Page, expect

from browser import (  # noqa: F401 (fixtures)
    browser, finished, goto_ready, page, playwright, server, sign_in, submit,
)
from servers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent


def _sweep(server: ServerProcess, tag: str) -> list[int]:
    """Three ended jobs tagged ``tag``, lr 0.1, 0.001, 0.03 (submitted in that order)."""
    return [finished(server, command=["true"], name=f"{tag}-{lr}", params={"lr": lr, "opt": "adam"},
                     tags=[tag, f"{tag}.{i}"])["id"] for i, lr in enumerate((0.1, 0.001, 0.03))]


def _ids(page: Page) -> list[int]:
    return [int(i) for i in page.locator("#job-table tbody tr[data-job-id]").evaluate_all(
        "rows => rows.map(r => r.dataset.jobId)")]


def test_params_are_columns_sorted_by_their_header_and_kept_in_the_url(page: Page, server: ServerProcess) -> None:
    a, b, c = _sweep(server, "sweep-cols")
    goto_ready(page, f"{server.url}/ui/jobs?q={quote('tag:sweep-cols')}")
    expect(page.locator("#job-table thead th.param")).to_have_text(["lr", "opt"])
    expect(page.locator("#job-table tbody tr")).to_have_count(3)
    assert _ids(page) == [c, b, a]  # newest first
    expect(page.locator(f"tr[data-job-id='{b}'] td[data-param=lr]")).to_have_text("0.001")
    page.locator("#job-table th.param", has_text="lr").locator("button").click()
    expect(page.locator("#job-table th.sorted-asc")).to_have_text("lr")
    expect(page.locator("#job-table tbody tr[data-job-id]").first).to_have_attribute("data-job-id", str(b))
    assert _ids(page) == [b, c, a]
    page.locator("#job-table th.param", has_text="lr").locator("button").click()
    expect(page.locator("#job-table th.sorted-desc")).to_have_text("lr")
    expect(page.locator("#job-table tbody tr[data-job-id]").first).to_have_attribute("data-job-id", str(a))
    assert _ids(page) == [a, c, b]
    expect(page).to_have_url(f"{server.url}/ui/jobs?q=tag%3Asweep-cols&sort=-param%3Alr")
    # as test_web_browser's: every run keeps it in test-artifacts/, MODELYARD_UPDATE_SCREENSHOT=1 in docs/ too
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-artifacts" / "jobs-params.png"))
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOT"):
        page.screenshot(path=str(ROOT / "docs" / "jobs-params.png"))
    # the URL is the table: opened afresh, the same rows in the same order
    other = page.context.new_page()
    goto_ready(other, page.url)
    expect(other.locator("#job-table th.sorted-desc")).to_have_text("lr")
    assert _ids(other) == [a, c, b]
    other.close()
    # chosen columns only
    page.fill("#cols", "opt")
    expect(page.locator("#job-table thead th.param")).to_have_text(["opt"])


def test_the_filter_box_and_a_tag_chip_filter_the_table(page: Page, server: ServerProcess) -> None:
    a, b, c = _sweep(server, "sweep-filter")
    goto_ready(page, f"{server.url}/ui/jobs")
    page.fill("#q", "tag:sweep-filter lr>=0.01")
    expect(page.locator("#job-table tbody tr[data-job-id]")).to_have_count(2)
    assert _ids(page) == [c, a]
    expect(page).to_have_url(f"{server.url}/ui/jobs?q=tag%3Asweep-filter+lr%3E%3D0.01")
    page.fill("#q", "")
    page.locator(f"tr[data-job-id='{b}'] button.tag[data-tag='sweep-filter.1']").click()
    expect(page.locator("#q")).to_have_value("tag:sweep-filter.1")
    expect(page.locator("#job-table tbody tr[data-job-id]")).to_have_count(1)
    assert _ids(page) == [b]
    page.fill("#q", "lr>>1")
    expect(page.locator("#q-error")).to_contain_text("lr>>1")
    expect(page.locator("#job-table tbody tr[data-job-id]")).to_have_count(0)


def test_the_job_page_shows_params_and_edits_tags(page: Page, server: ServerProcess) -> None:
    job = finished(server, command=["true"], params={"lr": 0.01, "warm": True}, tags=["baseline"])
    goto_ready(page, f"{server.url}/ui/jobs/{job['id']}")
    expect(page.locator("#params-tags dd[data-param=lr]")).to_have_text("0.01")
    expect(page.locator("#params-tags dd[data-param=warm]")).to_have_text("true")
    expect(page.locator("#tags .tag")).to_have_text(["baseline×"])
    page.fill("#tag-input", "keep best")
    page.click("#tag-form button[type=submit]")
    expect(page.locator("#tags .tag a")).to_have_text(["baseline", "best", "keep"])
    page.click("button[data-remove-tag=baseline]")
    expect(page.locator("#tags .tag a")).to_have_text(["best", "keep"])
    page.fill("#tag-input", "no/good?")
    page.click("#tag-form button[type=submit]")
    expect(page.locator("#tag-error")).to_contain_text("no/good?")
    goto_ready(page, f"{server.url}/ui/jobs/{job['id']}")  # kept
    expect(page.locator("#tags .tag a")).to_have_text(["best", "keep"])
    with server.client() as c:
        assert c.get(f"/jobs/{job['id']}").json()["tags"] == ["best", "keep"]
    # a chip's link is the table filtered by it
    page.click("#tags .tag a >> text=keep")
    expect(page.locator("#q")).to_have_value("tag:keep")
    expect(page.locator("#job-table tbody tr[data-job-id]")).to_have_count(1)


def test_another_user_cannot_tag_from_the_page(browser: Browser, server: ServerProcess) -> None:
    job = submit(server, command=["true"], tags=["admins"])
    with server.client() as c:
        token = c.post("/users", json={"name": "webparams-bob", "no_isolation": True}).json()["token"]
    bob = sign_in(browser, server, token)
    goto_ready(bob, f"{server.url}/ui/jobs/{job['id']}")
    expect(bob.locator("#tag-form")).to_have_count(0)  # a 404 page
    r = bob.request.post(f"{server.url}/api/v1/jobs/{job['id']}/tags", data={"add": ["bobs"]},
                         headers={"X-Modelyard-UI": "1"})
    assert r.status == 404
    bob.context.close()
