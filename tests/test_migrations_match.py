"""The migrations build exactly the tables ``db/schema.py`` declares, on SQLite and PostgreSQL.

A column added to the schema without a migration (or the reverse) would work in a test that
creates its tables one way and fail on a user's database built the other way."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from modelyard.db.engine import Database
from modelyard.db.schema import metadata


def _differences(db: Database) -> list[object]:
    with db.writer.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        diff = compare_metadata(ctx, metadata)
    # Optuna keeps its study in tables of its own in the same database (services/sweeps.py)
    return [d for d in diff if not (isinstance(d, tuple) and d[0] == "remove_table")]


def test_migrated_database_matches_schema(database_url):
    db = Database(database_url)
    try:
        db.migrate()
        assert _differences(db) == []
        if db.is_sqlite:  # which tables keep their ids for good: compare_metadata does not look
            with db.writer.connect() as conn:
                ddl = dict(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all())
            assert {name for name, sql in ddl.items() if "AUTOINCREMENT" in (sql or "")} == {
                t.name for t in metadata.sorted_tables if t.dialect_kwargs.get("sqlite_autoincrement")}
    finally:
        db.dispose()
