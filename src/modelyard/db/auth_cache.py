"""Verified tokens, kept for a few seconds, so that a client's every request (an MLflow loop's
``log_metric`` calls) does not pay a read transaction to learn again who its token speaks for.

Keyed by the token's sha256, as the table is. Only answers that let a caller in are kept: an
unknown or wrong token always asks the database (and counts against the throttle as before), and a
flood of guesses cannot fill the cache. An entry lives ``TTL`` seconds at most and never past its
token's expiry.

Whatever can make a kept answer wrong (a token revoked or removed, a user's admin right changed, an
attempt ending, a job removed) marks its write transaction with ``changed(conn)``; ``Database.write``
empties the cache once that transaction has committed (or rolled back). A lookup that read the
database before that moment keeps nothing (``epoch``), so in this process the very next request
after such a change is answered from the database. Another server process sharing the database
would see it after at most ``TTL`` seconds; modelyard runs one.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")
TTL = 2.0
MAX_ENTRIES = 4096
# set on a write connection whose transaction changes who a token speaks for (Database.write reads it)
CHANGED = "modelyard.auth_changed"


def changed(conn: sa.Connection) -> None:
    """This transaction changes who some token speaks for: drop every kept answer once it has ended."""
    conn.info[CHANGED] = True


class AuthCache:
    def __init__(self, ttl: float = TTL, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        # bumped by every clear: an answer read from the database under an older epoch may predate
        # the change that cleared the cache, so it is not kept
        self.epoch = 0

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def kept(self, key: Hashable, *, now: float | None = None) -> Any:
        """The kept answer for ``key``, or None: no database, so an async caller may ask on its loop."""
        entry = self._entries.get(key)
        return entry[1] if entry is not None and entry[0] > (time.time() if now is None else now) else None

    def lookup(self, key: Hashable, load: Callable[[], tuple[T, float | None] | None], *,
               now: float | None = None) -> T | None:
        """The kept answer for ``key``, else ``load()``'s: ``(value, expires_at)``, kept if not None."""
        now = time.time() if now is None else now
        hit = self.kept(key, now=now)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        epoch = self.epoch
        found = load()
        if found is None:
            return None
        value, expires_at = found
        until = now + self.ttl if expires_at is None else min(now + self.ttl, expires_at)
        with self._lock:
            if self.epoch == epoch:
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[key] = (until, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self.epoch += 1
            self._entries.clear()
