"""An in-process modelyard (real Platform, real database, the real app through an ASGI client)
with an admin and two plain users, for the dataset access and bounds probes."""
from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from modelyard.config import Settings
from modelyard.datasets.bounds import Limits
from modelyard.server.app import create_app
from modelyard.server.platform import Platform
from modelyard.db.users import create_user


@dataclass
class Site:
    platform: Platform
    clients: dict[str, TestClient]  # "admin", "ann", "bob": API clients under /api/v1
    tokens: dict[str, str]

    def web(self, who: str) -> TestClient:
        """A browser signed in as ``who`` (pages under /ui)."""
        c = TestClient(self.clients[who].app, base_url="http://testserver", follow_redirects=False)
        # the cookie holds a session, made by signing in through the form (its CSRF value included)
        csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/ui/login").text)
        assert csrf is not None
        assert c.post("/ui/login", data={"token": self.tokens[who], "csrf": csrf.group(1)}).status_code == 303
        return c


@contextmanager
def site(tmp_path: Path, database_url: str, limits: Limits | None = None) -> Iterator[Site]:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=database_url, storage_url=(home / "artifacts").as_uri(),
                        capacity="gpus=0,cpus=2,memory=8G", dataset_limits=limits or Limits())
    p = Platform(settings, server_url=None)  # not started: jobs stay queued, nothing launches
    try:
        app = create_app(p)
        tokens = {name: create_user(p.db, name, admin=name == "admin")[1] for name in ("admin", "ann", "bob")}
        clients = {name: TestClient(app, base_url="http://testserver/api/v1",
                                    headers={"Authorization": f"Bearer {token}"}) for name, token in tokens.items()}
        yield Site(p, clients, tokens)
    finally:
        p.close()


def tar_of(path: Path, *, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        tar.add(path, arcname=path.name)
    return buf.getvalue()


def upload(c: TestClient, data: bytes) -> str:
    r = c.post("/datasets/uploads", content=data, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 201, r.text
    return r.json()["upload"]
