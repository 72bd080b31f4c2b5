"""What a user is told of, and where, is theirs: nobody else reads or changes their notices, their
email or their choices, and what a job names cannot add headers to its owner's email."""
from __future__ import annotations

from pathlib import Path

from inproc import in_process

from modelyard.db import notices as store_notices


def test_nobody_else_changes_where_a_users_emails_go(tmp_path: Path) -> None:
    with in_process(tmp_path / "home") as ip:
        alice, bob = ip.new_user("alice"), ip.new_user("bob")
        c = ip.client
        assert c.patch("/api/v1/profile", json={"email": "alice@example.com"}, headers=ip.auth(alice)).status_code == 200
        for params in ({"user": "alice"}, {"user": "ALICE"}, {"user": "alice "}):
            r = c.patch("/api/v1/profile", params=params, json={"email": "bob@evil.example"}, headers=ip.auth(bob))
            assert r.status_code in (403, 422), r.text
            r = c.get("/api/v1/profile", params=params, headers=ip.auth(bob))
            assert r.status_code in (403, 422) and "alice@example.com" not in r.text, r.text
        # unknown fields are refused, not ignored: no way to slip a user id or a name in
        r = c.patch("/api/v1/profile", json={"email": "bob@evil.example", "user_id": 2}, headers=ip.auth(bob))
        assert r.status_code == 422
        assert c.get("/api/v1/profile", headers=ip.auth(alice)).json()["email"] == "alice@example.com"


def test_a_line_break_adds_no_email_header(tmp_path: Path) -> None:
    with in_process(tmp_path / "home") as ip:
        bob = ip.new_user("bob")
        for address in ("bob@example.com\r\nBcc: all@example.com", "bob@example.com\nBcc: all@example.com"):
            r = ip.client.patch("/api/v1/profile", json={"email": address}, headers=ip.auth(bob))
            assert r.status_code == 422 and r.json()["error"]["field"] == "email", r.text
        # the title, which is also the email's Subject, keeps a job's name on one line
        title = store_notices.title(7, "train\r\nBcc: all@example.com", "failed")
        assert "\n" not in title and "\r" not in title
