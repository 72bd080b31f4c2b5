"""Guessing tokens: bad bearer tokens and failed sign-ins are throttled per client address (429 + Retry-After)."""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from auth_helpers import App, client, csrf_of, make_app, user

from conftest import wait_for
from servers import ServerProcess


@pytest.fixture
def app_and_platform(tmp_path: Path) -> Iterator[App]:
    app, platform = make_app(tmp_path)
    yield app, platform
    platform.close()


def test_600_wrong_tokens_from_one_address_are_mostly_answered_429(app_and_platform: App) -> None:
    app, platform = app_and_platform
    good = user(platform, "alice")
    guesser = client(app, "203.0.113.5")
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()
    start = time.monotonic()
    for i in range(600):
        r = guesser.get("/api/v1/me", headers={"Authorization": f"Bearer my_guess{i}"})
        statuses[r.status_code] += 1
        if r.status_code == 429:
            retry_after.add(r.headers["retry-after"])
            assert r.json()["error"]["code"] == "throttled"
    rate = 600 / (time.monotonic() - start)
    print(f"600 wrong tokens at {rate:.0f}/s: {dict(statuses)}")
    assert statuses == {401: 10, 429: 590}
    assert all(1 <= int(s) <= 60 for s in retry_after)
    # while throttled, even the right token is refused from there: no telling right from wrong
    assert guesser.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 429
    # another address is not affected
    assert client(app, "198.51.100.20", token=good).get("/api/v1/me").status_code == 200


def test_failed_sign_ins_are_throttled_too(app_and_platform: App) -> None:
    app, platform = app_and_platform
    good = user(platform, "alice")
    c = client(app, "203.0.113.6")
    value = csrf_of(c.get("/ui/login").text)
    codes = [c.post("/ui/login", data={"token": f"wrong{i}", "csrf": value}).status_code for i in range(12)]
    assert codes == [401] * 10 + [429] * 2
    r = c.post("/ui/login", data={"token": good, "csrf": value})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "try again in" in r.text
    # the same address's bearer tokens share the count
    assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 429


def test_the_window_moves_on(tmp_path: Path) -> None:
    app, platform = make_app(tmp_path, auth_failures="3/second")
    try:
        good = user(platform, "alice")
        c = client(app, "203.0.113.7")
        for i in range(3):
            assert c.get("/api/v1/me", headers={"Authorization": f"Bearer no{i}"}).status_code == 401
        assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 429
        wait_for(lambda: c.get("/api/v1/me", headers={"Authorization": f"Bearer {good}"}).status_code == 200,
                 timeout=5, what="the window to pass")
    finally:
        platform.close()


# -- a real server: X-Forwarded-For is no way around it, unless the admin says there is a proxy ---

@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    direct = ServerProcess(tmp_path / "direct").start()
    proxied = ServerProcess(tmp_path / "proxied", env={"MODELYARD_BEHIND_TLS_PROXY": "1"}).start()
    yield direct, proxied
    direct.stop()
    proxied.stop()


def test_forwarded_headers_are_believed_only_behind_the_admins_proxy(
        servers: tuple[ServerProcess, ServerProcess]) -> None:
    direct, proxied = servers
    for srv, throttled in ((direct, True), (proxied, False)):
        with httpx.Client(base_url=srv.url) as c:
            codes = [c.get("/api/v1/me", headers={"Authorization": f"Bearer no{i}",
                                                  "X-Forwarded-For": f"192.0.2.{i}"}).status_code
                     for i in range(12)]
            # directly, each "address" is the same client; behind the proxy each is a client of its own
            assert codes == ([401] * 10 + [429] * 2 if throttled else [401] * 12), (srv.url, codes)
            form = c.get("/ui/login", headers={"X-Forwarded-Proto": "https"})
            assert ("secure" in form.headers["set-cookie"].lower()) == (not throttled)
