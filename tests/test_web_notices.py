"""The bell, the notices page and the settings page in a real browser against a real server:
a job fails → the bell's count goes up without a reload → the list → mark read → 0."""
from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page, expect

from browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, PY, browser, goto_ready, page, playwright, server, submit,
)
from servers import ServerProcess

DOCS = Path(__file__).resolve().parent.parent / "docs"
FAILS = [PY, "-c", "import sys; print('about to fail'); sys.exit(3)"]


def test_a_failed_job_rings_the_bell_and_is_marked_read(page: Page, server: ServerProcess) -> None:
    goto_ready(page, f"{server.url}/ui/jobs")
    count = page.locator("#bell-count")
    expect(count).to_have_text("0")
    job = submit(server, command=FAILS, name="breaks")
    expect(count).to_have_text("1")  # live: the page was not reloaded
    expect(page.locator("#bell")).to_have_class("bell has-unread")

    page.click("#bell")
    expect(page).to_have_url(f"{server.url}/ui/notices")
    expect(page.locator("html")).to_have_attribute("data-ready", "true")
    first = page.locator("li.notice").first
    expect(first).to_have_class("notice unread")
    expect(first.locator(".notice-title strong")).to_have_text(f"Job #{job['id']} breaks failed")
    expect(first.locator("a.notice-title")).to_have_attribute("href", f"/ui/jobs/{job['id']}")

    second = submit(server, command=FAILS, name="breaks-again")  # arrives while the list is open
    expect(count).to_have_text("2")
    expect(page.locator("li.notice.unread")).to_have_count(2)
    expect(page.locator("li.notice").first.locator("strong")).to_have_text(f"Job #{second['id']} breaks-again failed")
    expect(page.locator("#unread-text")).to_have_text("2 unread")
    page.screenshot(path=str(ARTIFACTS / "notices.png"), full_page=True)
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOT"):  # the README's; a plain run leaves docs/ as it is
        page.screenshot(path=str(DOCS / "notices.png"), full_page=True)

    page.locator("li.notice").first.locator("button.mark-read").click()
    expect(count).to_have_text("1")
    expect(page.locator("li.notice.unread")).to_have_count(1)
    page.click("#read-all")
    expect(count).to_have_text("0")
    expect(page.locator("li.notice.unread")).to_have_count(0)
    expect(page.locator("#read-all")).to_be_disabled()
    goto_ready(page, f"{server.url}/ui/notices")  # stored, not only shown
    expect(count).to_have_text("0")
    expect(page.locator("li.notice")).to_have_count(2)

    page.locator("li.notice a.notice-title").last.click()
    expect(page).to_have_url(f"{server.url}/ui/jobs/{job['id']}")


def test_the_settings_page_saves_the_email_and_the_choices(page: Page, server: ServerProcess) -> None:
    goto_ready(page, f"{server.url}/ui/settings")
    expect(page.locator("#no-smtp")).to_be_visible()  # this server has no MODELYARD_SMTP_URL
    expect(page.get_by_label("failed by email")).to_be_checked()
    expect(page.get_by_label("started by notice")).not_to_be_checked()
    page.fill("#email", "not an address")
    page.click("#settings-form button[type=submit]")
    expect(page.locator("#settings-status")).to_have_text("email: not an email address: 'not an address'")
    page.fill("#email", "local@example.com")
    page.get_by_label("started by notice").check()
    page.get_by_label("succeeded by notice").uncheck()
    page.click("#settings-form button[type=submit]")
    expect(page.locator("#settings-status")).to_have_text("Saved.")
    goto_ready(page, f"{server.url}/ui/settings")
    expect(page.locator("#email")).to_have_value("local@example.com")
    expect(page.get_by_label("started by notice")).to_be_checked()
    expect(page.get_by_label("succeeded by notice")).not_to_be_checked()
    page.screenshot(path=str(ARTIFACTS / "settings.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 800})  # and at a phone's width
    for path in ("/ui/settings", "/ui/notices"):
        goto_ready(page, f"{server.url}{path}")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path  # nothing spills sideways
    with server.client() as c:
        profile = c.get("/profile").json()
    assert profile["email"] == "local@example.com" and profile["notify"]["started"] == ["notice"]
    assert profile["notify"]["succeeded"] == ["webhook"]
