"""The server in-process for security tests: the real app over a fresh SQLite home, through
FastAPI's TestClient (no socket, no lifespan: the scheduler never runs, so no job starts)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient
from fuzz_server import RefusingExecutor

from modelyard.config import Settings
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform


@dataclass
class InProc:
    client: TestClient
    platform: Platform
    admin: str  # the admin's token

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def new_user(self, name: str) -> str:
        r = self.client.post("/api/v1/users", json={"name": name, "no_isolation": True}, headers=self.auth(self.admin))
        assert r.status_code == 201, r.text
        return r.json()["token"]


@contextmanager
def in_process(home: Path, database_url: str | None = None, *, env: dict[str, str] | None = None) -> Iterator[InProc]:
    home.mkdir(parents=True, exist_ok=True)
    env = {"MODELYARD_HOME": str(home), "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G", **(env or {})}
    if database_url:
        env["MODELYARD_DATABASE_URL"] = database_url
    settings = Settings.from_env(env)
    platform = Platform(settings, server_url="http://127.0.0.1:1", executor=RefusingExecutor(settings.capacity))
    admin = ensure_local_user(platform, home)
    client = TestClient(create_app(platform), raise_server_exceptions=False)
    try:
        yield InProc(client, platform, admin)
    finally:
        client.close()
        platform.close()
