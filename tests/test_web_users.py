"""The users page and the queue's quota reason in a real browser: an admin edits a quota on
/ui/admin/users, a job over it waits with the reason on the queue page, the admin revokes a token."""
from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Browser, expect

from conftest import wait_for
from servers import ServerProcess
from browser import (  # noqa: F401 (fixtures)
    ARTIFACTS, SLEEPER, browser, confirm_dialogs, goto_ready, page, playwright, server, sign_in,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_an_admin_edits_a_quota_a_job_waits_for_it_and_a_token_is_revoked(
    server: ServerProcess, browser: Browser,
) -> None:
    with server.client() as admin:
        alice = admin.post("/users", json={"name": "alice", "no_isolation": True}).json()["token"]
    with server.client(alice) as c:
        laptop = c.post("/tokens", json={"name": "laptop"}).json()

    page = sign_in(browser, server, server.token)
    goto_ready(page, f"{server.url}/ui/admin/users")
    row = page.locator("#users tr[data-user=alice]")
    row.get_by_label("alice's CPU quota").fill("1")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("#users tr[data-user=alice] td[data-col=cpus]")).to_have_text("0 / 1")
    with server.client() as admin:
        assert admin.get("/users/alice").json()["quota"]["cpus"] == 1.0

    # alice's second one-CPU job waits for her quota, and the queue page says so
    with server.client(alice) as c:
        first = c.post("/jobs", json={"spec": {"command": SLEEPER, "resources": {"cpus": 1}}}).json()
        second = c.post("/jobs", json={"spec": {"command": SLEEPER, "resources": {"cpus": 1}}}).json()
        wait_for(lambda: c.get(f"/jobs/{first['id']}").json()["state"] == "running", timeout=60,
                 what="alice's first job runs")
    goto_ready(page, f"{server.url}/ui/queue")
    waiting = page.locator("#waiting tr", has_text=f"#{second['id']}")
    expect(waiting).to_contain_text("waits: alice uses 1 of their 1 CPUs (quota)")
    expect(waiting).to_have_attribute("data-waits-for", "quota")
    goto_ready(page, f"{server.url}/ui/jobs/{second['id']}")  # the job's own page says it too
    expect(page.locator(".waiting-reason")).to_contain_text("waits: alice uses 1 of their 1 CPUs (quota)")

    goto_ready(page, f"{server.url}/ui/admin/users")
    expect(page.locator("#users tr[data-user=alice] td[data-col=queued]")).to_have_text("1 / -")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "users-page.png"), full_page=True)
    if os.environ.get("MODELYARD_UPDATE_SCREENSHOT"):  # the README's; a plain run leaves docs/ as it is
        page.screenshot(path=str(DOCS / "users-page.png"), full_page=True)

    # revoking asks first: dismissed, nothing changes; accepted, the token is gone
    answers = confirm_dialogs(page)
    token_row = page.locator(f"#tokens tr[data-token='{laptop['id']}']")
    answers.append(False)
    token_row.get_by_role("button", name="Revoke").click()
    expect(token_row).to_be_visible()
    answers.append(True)
    token_row.get_by_role("button", name="Revoke").click()
    expect(page.locator(f"#tokens tr[data-token='{laptop['id']}']")).to_have_count(0)
    with server.client(laptop["token"]) as c:
        assert c.get("/me").status_code == 401
    with server.client(alice) as c:
        assert c.get("/me").status_code == 200  # her other token still works
        for job in (first, second):
            c.post(f"/jobs/{job['id']}/stop")


def test_a_plain_user_sees_their_own_usage_not_the_users_page(server: ServerProcess, browser: Browser) -> None:
    with server.client() as admin:
        bob = admin.post("/users", json={"name": "bob", "no_isolation": True}).json()["token"]
        admin.put("/users/bob/quota", json={"gpus": 2, "queued": 5})
    page = sign_in(browser, server, bob)
    expect(page.get_by_role("link", name="Users")).to_have_count(0)
    page.get_by_role("link", name="Usage").click()
    expect(page.locator("#usage td[data-col=gpus]")).to_have_text("0 / 2")
    expect(page.locator("#usage td[data-col=queued]")).to_have_text("0 / 5")
    page.get_by_role("link", name="Email and notification settings").click()  # the two pages link each other
    page.get_by_role("link", name="Your quota and usage").click()
    expect(page).to_have_url(f"{server.url}/ui/me")
    page.goto(f"{server.url}/ui/admin/users")
    expect(page.locator("h1")).to_have_text("403 · Forbidden")
