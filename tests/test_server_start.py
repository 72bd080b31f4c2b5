"""Server start: a fresh home and an older schema both end up at the migrations' head, and a
start at head skips Alembic (and the other imports a start need not pay for)."""
from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from conftest import wait_for
from modelyard.db import engine as store_db
from modelyard.db.engine import Database, script_heads
from modelyard.destinations import parse_allow
from modelyard.webhooks import WebhookSender
from servers import ServerProcess


def alembic_config(conn: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(store_db.MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def alembic_heads() -> set[str]:
    """The heads as Alembic itself reads them: the reference ``script_heads`` must agree with."""
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def schema_of(url: str) -> dict[str, set[str]]:
    """Table -> column names and index names: what an upgraded and a fresh database must share."""
    engine = sa.create_engine(store_db.normalise_url(url))
    try:
        insp = sa.inspect(engine)
        return {t: {c["name"] for c in insp.get_columns(t)} | {f"index:{i['name']}" for i in insp.get_indexes(t)}
                for t in insp.get_table_names()}
    finally:
        engine.dispose()


def test_script_heads_reads_the_same_head_as_alembic() -> None:
    assert script_heads(store_db.MIGRATIONS / "versions") == alembic_heads()


def test_script_heads_follows_a_new_migration_and_gives_up_on_what_it_cannot_read(tmp_path: Path) -> None:
    versions = tmp_path / "versions"
    shutil.copytree(store_db.MIGRATIONS / "versions", versions, ignore=shutil.ignore_patterns("__pycache__"))
    (old_head,) = alembic_heads()
    (versions / "9001_next.py").write_text(
        f'revision: str = "9001"\ndown_revision: str | None = {old_head!r}\n')
    assert script_heads(versions) == {"9001"}
    (versions / "9002_branch.py").write_text(f'revision = "9002"\ndown_revision = {old_head!r}\n')
    assert script_heads(versions) == {"9001", "9002"}
    (versions / "9003_merge.py").write_text('revision = "9003"\ndown_revision = ("9001", "9002")\n')
    assert script_heads(versions) == {"9003"}
    (versions / "9004_computed.py").write_text('revision = "9" + "004"\ndown_revision = "9003"\n')
    assert script_heads(versions) is None  # not a literal: Alembic decides
    assert script_heads(tmp_path / "nowhere") is None


def test_a_database_at_head_is_migrated_again_when_a_migration_is_added(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'modelyard.db'}"
    database = Database(url)
    database.migrate()
    assert database.revisions() == alembic_heads()
    migrations = tmp_path / "migrations"
    shutil.copytree(store_db.MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (old_head,) = alembic_heads()
    (migrations / "versions" / "9001_marker.py").write_text(
        "from alembic import op\nimport sqlalchemy as sa\n\n"
        f"revision = '9001'\ndown_revision = {old_head!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
        "def upgrade() -> None:\n"
        "    op.create_table('start_marker', sa.Column('id', sa.Integer(), primary_key=True))\n\n\n"
        "def downgrade() -> None:\n    op.drop_table('start_marker')\n")
    monkeypatch.setattr(store_db, "MIGRATIONS", migrations)
    database.migrate()
    assert database.revisions() == {"9001"}
    assert "start_marker" in schema_of(url)
    database.dispose()


def test_a_fresh_home_starts_healthy_with_the_schema_at_head(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "home").start()
    try:
        with srv.client() as c:
            assert c.get("/health").json()["status"] == "ok"
            assert c.get("/me").json()["name"] == "local"  # the database answers
            assert c.get("/jobs").status_code == 200
    finally:
        srv.stop()
    database = Database(f"sqlite:///{tmp_path / 'home' / 'modelyard.db'}")
    assert database.revisions() == alembic_heads()
    database.dispose()


def test_a_database_at_an_older_revision_is_upgraded_on_start(tmp_path: Path, database_url: str) -> None:
    old = Database(database_url)
    (base,) = ScriptDirectory.from_config(alembic_config()).get_bases()
    with old.writer.begin() as conn:
        command.upgrade(alembic_config(conn), base)
    assert old.revisions() == {base} != alembic_heads()
    old.dispose()

    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_DATABASE_URL": database_url}).start()
    try:
        with srv.client() as c:
            assert c.get("/jobs").status_code == 200
    finally:
        srv.stop()
    upgraded = Database(database_url)
    assert upgraded.revisions() == alembic_heads()
    upgraded.dispose()
    fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    fresh = Database(fresh_url)
    fresh.migrate()
    fresh.dispose()
    if database_url.startswith("sqlite"):
        assert schema_of(database_url) == schema_of(fresh_url)
    else:  # index names and types differ by dialect; the tables and columns may not
        assert {t: {c for c in cols if not c.startswith("index:")} for t, cols in schema_of(database_url).items()} \
            == {t: {c for c in cols if not c.startswith("index:")} for t, cols in schema_of(fresh_url).items()}


START = """
import json, sys
from modelyard.config import Settings
from modelyard.server.app import create_app, ensure_local_user
from modelyard.server.platform import Platform
settings = Settings.from_env()
platform = Platform(settings, server_url="http://127.0.0.1:1")
ensure_local_user(platform, settings.home)
create_app(platform)
platform.close()
print(json.dumps({m: m in sys.modules for m in ("alembic", "httpx", "tenacity", "jinja2", "numpy", "optuna")}))
"""


def start_path_imports(home: Path, database_url: str) -> dict[str, bool]:
    """What the server's start-up path (everything ``serve`` does before uvicorn) imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(MODELYARD_HOME=str(home), MODELYARD_DATABASE_URL=database_url)
    out = subprocess.run([sys.executable, "-c", START], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


def test_a_start_at_head_skips_alembic(tmp_path: Path, database_url: str) -> None:
    first = start_path_imports(tmp_path / "home", database_url)
    assert first["alembic"]  # a fresh database: Alembic creates the schema
    assert not first["numpy"]  # only a migration that moves existing metric points needs it
    again = start_path_imports(tmp_path / "home", database_url)
    assert again == {"alembic": False, "httpx": False, "tenacity": False, "jinja2": False, "numpy": False,
                     "optuna": False}  # only once there is a sweep


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server name
        _Receiver.received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


def test_the_webhook_sender_starts_with_its_first_delivery() -> None:
    idle = WebhookSender()
    idle.close()  # nothing sent: no thread to stop
    assert idle._thread is None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    sender = WebhookSender(allow=parse_allow(["127.0.0.1/32"]))  # a job's webhook may reach loopback only so
    try:
        sender.send([url, url], {"event": "job.ended", "job": {"id": 1}})
        wait_for(lambda: _Receiver.received, 10, what="the webhook")
        assert json.loads(_Receiver.received[0]) == {"event": "job.ended", "job": {"id": 1}}
    finally:
        sender.close()
        server.shutdown()
    assert len(_Receiver.received) == 1  # the same URL twice: one POST
    sender.send([url], {"event": "late"})  # after close: dropped, not queued for a thread that has ended


def test_the_listening_socket_makes_asyncio_turn_off_nagle_on_each_connection() -> None:
    """Replies are written as headers then body: with Nagle on, each waited ~40 ms for a delayed ACK."""
    import asyncio
    import socket

    from modelyard.server.app import _bind

    sock = _bind("127.0.0.1", 0, fallback_to_any=False)
    seen: list[int] = []

    async def scenario() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _reader, writer = await asyncio.open_connection(*sock.getsockname()[:2])
            await asyncio.wait_for(_reader.read(), timeout=10)  # the handler ran and closed
            writer.close()

    asyncio.run(scenario())
    assert seen == [1]
