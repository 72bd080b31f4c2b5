"""Engines and migrations: the one place that knows SQLite from PostgreSQL.

SQLite runs in WAL mode with a single writer: writes take ``BEGIN IMMEDIATE``
on a dedicated writer engine (so two writers queue instead of failing on a lock
upgrade), reads use a separate engine and never block on a writer.
"""
from __future__ import annotations

import ast
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import sqlalchemy as sa

from modelyard.db import auth_cache
from modelyard.db.auth_cache import AuthCache

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Let people write postgresql:// and get psycopg 3, the driver we ship."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class Database:
    """A writer engine and a reader engine (the same one on PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = sa.engine.make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.writer = _sqlite_engine(self.url, immediate=True)
            self.reader = _sqlite_engine(self.url, immediate=False)
        else:
            self.writer = sa.create_engine(self.url, pool_size=10, max_overflow=20, pool_pre_ping=True)
            self.reader = self.writer
        # one writer at a time inside this process: SQLite would serialise anyway
        self._write_lock = threading.Lock() if self.is_sqlite else None
        self.auth_cache = AuthCache()

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        with self._write_lock or nullcontext(), self.writer.connect() as conn:
            try:
                with conn.begin():
                    yield conn
            finally:
                # after the commit, not before: a token lookup between the two would keep the old answer
                if conn.invalidated or conn.info.pop(auth_cache.CHANGED, False):
                    self.auth_cache.clear()

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.reader.connect() as conn:
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to call on every start).

        Alembic costs ~0.2 s to import and load its scripts, so a database
        already at the scripts' head (read from the files: ``script_heads``) is
        left alone without it. Anything else goes through Alembic as before.
        """
        heads = script_heads(MIGRATIONS / "versions")
        if heads is not None and self.revisions() == heads:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.writer.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def revisions(self) -> set[str]:
        """The Alembic revisions the database is at (empty: none, or a fresh database)."""
        with self.reader.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return set()
            return set(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def script_heads(versions: Path) -> set[str] | None:
    """The head revisions of the migration scripts in ``versions``, read without Alembic.

    A revision that no script names as its ``down_revision`` is a head, as
    Alembic reads them. None when that cannot be told for sure (a script
    without literal ids, ``depends_on``, no scripts): the caller runs Alembic.
    """
    revisions: set[str] = set()
    downs: set[str] = set()
    # Alembic loads every *.py in versions/ except __init__.py and editor lock files
    for path in versions.glob("*.py"):
        if path.name == "__init__.py" or path.name.startswith(".#"):
            continue
        try:
            values = _literal_assignments(path, ("revision", "down_revision", "depends_on"))
        except (OSError, SyntaxError, ValueError):
            return None
        rev, down = values.get("revision"), values.get("down_revision")
        if not isinstance(rev, str) or values.get("depends_on") is not None:
            return None
        parents = (down,) if down is None or isinstance(down, str) else down  # a merge names a tuple
        if not isinstance(parents, (tuple, list)) or not all(d is None or isinstance(d, str) for d in parents):
            return None
        revisions.add(rev)
        downs.update(d for d in parents if d)
    return (revisions - downs) or None


def _literal_assignments(path: Path, names: tuple[str, ...]) -> dict[str, object]:
    """Module-level ``name = <literal>`` (or ``name: T = <literal>``) values of a script."""
    found: dict[str, object] = {}
    for node in ast.parse(path.read_bytes(), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            found[target.id] = ast.literal_eval(value)  # ValueError: not a literal
    return found


def _sqlite_engine(url: str, *, immediate: bool) -> sa.Engine:
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
