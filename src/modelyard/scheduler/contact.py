"""When each active attempt's supervisor last reached the server, kept in memory.

The stored ``last_heartbeat`` is written with each report; when the database
cannot be written (a full disk) the report fails after the supervisor has
plainly reached us. The report route records the contact here first, and the
lost-attempt check takes the later of the two, so a supervisor that keeps
reporting is never declared lost because the server could not store it.
The map is lost with the server: after a restart the scheduler's own grace
(``started_at``) covers the silence. A multi-node attempt's node ranks past 0
are keyed ``(attempt_id, rank)``: each has its own heartbeat.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterable

Key = int | tuple[int, int]  # an attempt (its rank 0), or one of its node ranks past 0


class ContactTimes:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._at: dict[Key, float] = {}

    def touch(self, attempt_id: Key, now: float | None = None) -> None:
        at = time.time() if now is None else now
        with self._lock:
            self._at[attempt_id] = max(at, self._at.get(attempt_id, 0.0))

    def last(self, attempt_id: Key, stored: float) -> float:
        """The later of ``stored`` (the row's heartbeat) and the last contact seen here."""
        with self._lock:
            return max(stored, self._at.get(attempt_id, 0.0))

    def keep_only(self, attempt_ids: Iterable[int]) -> None:
        """Forget ended attempts, so the map holds only the active ones."""
        keep = set(attempt_ids)
        with self._lock:
            self._at = {k: v for k, v in self._at.items() if (k[0] if isinstance(k, tuple) else k) in keep}
