"""Which failures mean "the disk is full", and the one error that says so.

A full disk shows up three ways: ``OSError`` ENOSPC from a file write (a
snapshot or dataset upload into a ``file://`` store, a temporary file),
SQLite's SQLITE_FULL ("database or disk is full"), and PostgreSQL's DiskFull
(SQLSTATE 53100). Each becomes ``ErrorCode.DISK_FULL`` with a message naming
the disk to free: ``MODELYARD_HOME``'s for files and SQLite, the database
server's for PostgreSQL. Every write that fails this way was inside a
transaction (``Database.write``) or to a temporary file, so nothing is left
half-written.
"""
from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import sqlalchemy.exc

from modelyard.errors import ErrorCode, ModelyardError

SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def disk_full_error(exc: BaseException, home: Path) -> ModelyardError | None:
    """The ``disk_full`` error for ``exc`` if it is a full disk, else None."""
    orig = exc.orig if isinstance(exc, sqlalchemy.exc.DBAPIError) else exc
    if isinstance(orig, OSError) and orig.errno == errno.ENOSPC:
        return _home_full(home)
    if isinstance(orig, sqlite3.Error) and (
            getattr(orig, "sqlite_errorcode", None) == SQLITE_FULL or "database or disk is full" in str(orig)):
        return _home_full(home)
    if getattr(orig, "sqlstate", None) == PG_DISK_FULL:
        return ModelyardError(ErrorCode.DISK_FULL, "the database server's disk is full: nothing was stored; "
                                                   "free space on the PostgreSQL server and try again")
    return None


def _home_full(home: Path) -> ModelyardError:
    return ModelyardError(ErrorCode.DISK_FULL, f"the disk of MODELYARD_HOME ({home}) is full: nothing was stored; "
                                               "free space on it and try again")
