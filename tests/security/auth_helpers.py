"""In-process servers for the auth, session and webhook probes: the real app, store and SQLite or
PostgreSQL, driven through Starlette's TestClient (no socket), each client from an address of its own."""
from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Any

from fastapi import FastAPI

with warnings.catch_warnings():  # Starlette would rather we installed httpx2; httpx is what we ship
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from modelyard.config import Settings
from modelyard.server.app import create_app
from modelyard.server.platform import Platform
from modelyard.db.users import create_user


App = tuple[FastAPI, Platform]


def make_app(tmp_path: Path, database_url: str | None = None, **settings: Any) -> App:
    """An app over a fresh store; the scheduler is not started (no lifespan), nothing runs jobs."""
    home = tmp_path / "home"
    base = Settings.from_env({"MODELYARD_HOME": str(home), "MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G",
                              **({"MODELYARD_DATABASE_URL": database_url} if database_url else {})})
    platform = Platform(dataclasses.replace(base, **settings), server_url="http://127.0.0.1:1")
    return create_app(platform), platform


def client(app: FastAPI, address: str = "198.51.100.7", *, base_url: str = "http://testserver",
           token: str | None = None) -> TestClient:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = TestClient(app, base_url=base_url, client=(address, 50000), follow_redirects=False)
    if token:
        c.headers["Authorization"] = f"Bearer {token}"
    return c


def user(platform: Platform, name: str, *, admin: bool = False) -> str:
    """A user and their first token."""
    return create_user(platform.db, name, admin=admin)[1]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:400]
    return found.group(1)


def sign_in(c: TestClient, token: str, next: str = "/ui/jobs") -> Any:
    form = c.get("/ui/login")
    return c.post("/ui/login", data={"token": token, "next": next, "csrf": csrf_of(form.text)})
