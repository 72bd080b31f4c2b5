"""Shared fixtures: real PostgreSQL databases, a real S3 API (moto's server), a clean MODELYARD_HOME.

Nothing here skips: if PostgreSQL or moto is missing, the tests that need them fail,
on CI and on a developer's machine alike.
"""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("MODELYARD_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> object:
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and everything it started, and wait until they are gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        family = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    import sqlalchemy as sa

    name = f"modelyard_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both store backends: every test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'modelyard.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API on 127.0.0.1 (moto's server); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials and endpoint for s3fs/boto, plus a fresh bucket; returns the env it set."""
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ENDPOINT_URL_S3": s3_server,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bucket = f"modelyard-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket=bucket)
    env["BUCKET"] = bucket
    return env


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean MODELYARD_HOME, and no client variables leaking in from the caller's shell."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("MODELYARD_HOME", str(h))
    for var in ("MODELYARD_URL", "MODELYARD_TOKEN", "MODELYARD_DATABASE_URL", "MODELYARD_STORAGE_URL"):
        monkeypatch.delenv(var, raising=False)
    return h
