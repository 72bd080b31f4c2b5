"""The store: tables and queries over SQLAlchemy 2, on SQLite (WAL) or PostgreSQL.

``Database`` owns the engines; ``jobs``, ``users`` and ``reports`` are the
queries, each taking the database (or a connection) as an argument.
"""
from modelyard.db.engine import Database

__all__ = ["Database"]
