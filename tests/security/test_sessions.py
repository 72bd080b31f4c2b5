"""Web sessions: the cookie is a server-side session (not the API token), signing out ends it,
it expires, sign-in is protected from login CSRF, and every answer carries the security headers."""
from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from auth_helpers import App, client, csrf_of, make_app, sign_in, user

from conftest import wait_for
from servers import ServerProcess

from modelyard.server.auth import COOKIE
from modelyard.server.web.session import CSRF_COOKIE
from modelyard.db.schema import sessions
from modelyard.db.sessions import SessionPolicy, create_session, session_user
from modelyard.db.users import create_user

HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin"}


@pytest.fixture
def app_and_platform(tmp_path: Path) -> Iterator[App]:
    app, platform = make_app(tmp_path)
    yield app, platform
    platform.close()


def test_the_cookie_is_a_session_id_not_the_api_token(app_and_platform: App) -> None:
    app, platform = app_and_platform
    token = user(platform, "alice")
    c = client(app)
    r = sign_in(c, token)
    assert r.status_code == 303
    cookie = c.cookies[COOKIE]
    assert cookie != token and token not in r.headers["set-cookie"]
    with platform.db.read() as conn:
        stored = conn.execute(sa.select(sessions.c.session_hash)).scalars().all()
    assert stored == [hashlib.sha256(cookie.encode()).hexdigest()]  # kept hashed, never in clear
    assert c.get("/api/v1/me").json()["name"] == "alice"
    assert c.get("/ui/jobs").status_code == 200


def test_signing_out_ends_the_session_for_every_copy_of_the_cookie(app_and_platform: App) -> None:
    app, platform = app_and_platform
    c = client(app)
    sign_in(c, user(platform, "alice"))
    stolen = c.cookies[COOKIE]
    assert c.post("/ui/logout").status_code == 303
    copy = client(app)
    copy.cookies.set(COOKIE, stolen)
    assert copy.get("/api/v1/me").status_code == 401
    r = copy.get("/ui/jobs")
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def test_revoking_the_token_signed_in_with_ends_its_sessions(app_and_platform: App) -> None:
    app, platform = app_and_platform
    first = user(platform, "alice")
    api = client(app, token=first)
    leaked = api.post("/api/v1/tokens", json={"name": "leaked"}).json()
    browser = client(app, "198.51.100.50")
    sign_in(browser, leaked["token"])
    assert browser.get("/api/v1/me").status_code == 200
    api.delete(f"/api/v1/tokens/{leaked['id']}")
    assert browser.get("/api/v1/me").status_code == 401
    assert browser.get("/ui/jobs").status_code == 303


def test_a_session_ends_no_later_than_its_token(database_url: str) -> None:
    from modelyard.db.engine import Database
    from modelyard.db.users import add_token, live_token

    db = Database(database_url)
    db.migrate()
    alice, _ = create_user(db, "alice")
    t0 = 1_000_000.0
    found = live_token(db, add_token(db, alice.id, expires_at=t0 + 500), now=t0)
    assert found is not None
    policy = SessionPolicy(idle=10_000.0, absolute=10_000.0)
    session = create_session(db, alice.id, policy, token=found[1], now=t0)
    assert session_user(db, session, policy, now=t0 + 499) == alice
    assert session_user(db, session, policy, now=t0 + 500) is None
    db.dispose()


def test_a_write_with_the_cookie_needs_the_ui_header(app_and_platform: App) -> None:
    app, platform = app_and_platform
    c = client(app)
    sign_in(c, user(platform, "alice"))
    body = {"spec": {"command": ["true"]}}
    assert c.post("/api/v1/jobs", json=body).status_code == 401  # what a cross-site form could send
    assert c.post("/api/v1/jobs", json=body, headers={"X-Modelyard-UI": "1"}).status_code == 201


def test_sign_in_without_the_forms_csrf_value_is_refused(app_and_platform: App) -> None:
    app, platform = app_and_platform
    token = user(platform, "mallory")
    victim = client(app)
    # another site's page posts the attacker's token: the victim's browser has no CSRF cookie for it
    assert victim.post("/ui/login", data={"token": token}).status_code == 403
    assert victim.post("/ui/login", data={"token": token, "csrf": "guessed"}).status_code == 403
    assert COOKIE not in victim.cookies
    # even with the attacker's own form value, the victim's cookie (from an earlier visit) differs
    attacker = client(app, "203.0.113.9")
    value = csrf_of(attacker.get("/ui/login").text)
    victim.get("/ui/login")
    assert victim.post("/ui/login", data={"token": token, "csrf": value}).status_code == 403
    assert COOKIE not in victim.cookies


def test_a_cross_site_post_to_the_login_form_is_refused(app_and_platform: App) -> None:
    app, platform = app_and_platform
    token = user(platform, "mallory")
    c = client(app)
    value = csrf_of(c.get("/ui/login").text)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
        r = c.post("/ui/login", data={"token": token, "csrf": value}, headers=headers)
        assert r.status_code == 403, headers
        assert COOKIE not in c.cookies
    ok = c.post("/ui/login", data={"token": token, "csrf": value},
                headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 303 and COOKIE in c.cookies


def test_sessions_expire_when_idle_and_in_any_case(database_url: str) -> None:
    from modelyard.db.engine import Database

    db = Database(database_url)
    db.migrate()
    alice, _ = create_user(db, "alice")
    policy = SessionPolicy(idle=100.0, absolute=1000.0)
    t0 = 1_000_000.0
    idle = create_session(db, alice.id, policy, now=t0)
    assert session_user(db, idle, policy, now=t0 + 99) == alice
    assert session_user(db, idle, policy, now=t0 + 99 + 100) is None  # 100 s after it was last seen
    assert session_user(db, idle, policy, now=t0 + 100) is None  # and it is gone, not just asleep
    busy = create_session(db, alice.id, policy, now=t0)
    for t in range(90, 1000, 90):  # seen every 90 s: never idle
        assert session_user(db, busy, policy, now=t0 + t) == alice, t
    assert session_user(db, busy, policy, now=t0 + 1000) is None  # the absolute end
    db.dispose()


def test_an_expired_session_signs_the_browser_out(tmp_path: Path) -> None:
    app, platform = make_app(tmp_path, session_idle=0.5)
    try:
        c = client(app)
        sign_in(c, user(platform, "alice"))
        assert c.get("/api/v1/me").status_code == 200
        wait_for(lambda: c.get("/api/v1/me").status_code == 401, timeout=10, what="the idle session to end")
    finally:
        platform.close()


def test_secure_cookies_over_https_and_behind_a_tls_proxy(tmp_path: Path) -> None:
    plain, p1 = make_app(tmp_path / "a")
    proxied, p2 = make_app(tmp_path / "b", behind_tls_proxy=True)
    try:
        for n, (app, platform, base, secure) in enumerate(((plain, p1, "http://testserver", False),
                                                           (plain, p1, "https://testserver", True),
                                                           (proxied, p2, "http://testserver", True))):
            c = client(app, base_url=base)
            form = c.get("/ui/login")
            assert ("secure" in form.headers["set-cookie"].lower()) == secure
            value = csrf_of(form.text)
            c.cookies.clear()  # a Secure cookie is not sent back over http: hand it over as the browser would
            c.cookies.set(CSRF_COOKIE, value)
            r = c.post("/ui/login", data={"token": user(platform, f"user{n}"), "csrf": value})
            assert r.status_code == 303, r.text[:300]
            set_cookie = r.headers["set-cookie"].lower()
            assert "httponly" in set_cookie and "samesite=strict" in set_cookie
            assert ("secure" in set_cookie) == secure, (base, secure, set_cookie)
    finally:
        p1.close()
        p2.close()


def test_security_headers_on_every_page_and_api_answer(app_and_platform: App) -> None:
    app, platform = app_and_platform
    c = client(app)
    anonymous = [c.get("/ui/login"), c.get("/api/v1/health"), c.get("/api/v1/jobs"), c.get("/ui/jobs"),
                 c.get("/ui/static/app.css"), c.get("/api/v1/openapi.json"), c.get("/nothing-here")]
    sign_in(c, user(platform, "alice"))
    signed_in = [c.get("/ui/jobs"), c.get("/ui/new"), c.get("/ui/jobs?format=json"), c.get("/api/v1/me")]
    for r in anonymous + signed_in:
        for name, value in HEADERS.items():
            assert r.headers.get(name) == value, (r.request.url, name)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp


# -- the pages still work under the policy, in a real browser ------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G"}).start()
    yield srv
    srv.stop()


def test_the_pages_run_under_the_content_security_policy(server: ServerProcess) -> None:
    from playwright.sync_api import expect, sync_playwright

    code = "import json\nfor i in range(20): print(json.dumps({'metric': 'loss', 'value': 1 / (i + 1), 'step': i}))"
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"name": "curve", "command": [sys.executable, "-c", code]}}).json()
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded", timeout=60, what="the job")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation',"
                             " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(f"{server.url}/ui/login")
        page.fill("input[name=token]", server.token)
        page.click("button.primary")
        expect(page.locator("#job-table")).to_contain_text("curve")
        assert page.evaluate("window.__csp") == []
        page.goto(f"{server.url}/ui/jobs/{job['id']}")
        expect(page.locator("canvas").first).to_be_visible()  # uPlot drew the chart
        assert page.evaluate("window.__csp") == [] and not [e for e in errors if "Content Security" in e]
        browser.close()
