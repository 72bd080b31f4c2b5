"""The sweep driver: a thread started with the platform that makes a pass over every running sweep
each ``interval`` and whenever woken (a sweep made, a job ended). What a pass does is in
services/sweep_engine.py; every pass, and a sweep's stop, holds one lock, so they never interleave.
A server restarted mid-sweep resumes it on its first pass."""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from modelyard.db import sweeps as store_sweeps
from modelyard.db.engine import Database
from modelyard.db.records import User
from modelyard.db.sweeps import Sweep

if TYPE_CHECKING:
    import optuna

    from modelyard.services.sweep_engine import SweepEngine, Stop, Submit

log = logging.getLogger("modelyard.sweeps")


class SweepDriver:
    """``step_all`` is one pass (the thread's, or a test's)."""

    def __init__(self, db: Database, *, submit: Submit, stop: Stop, interval: float = 1.0) -> None:
        self.db = db
        self._submit = submit
        self._stop = stop
        self.interval = interval
        self.lock = threading.RLock()
        self._engine: SweepEngine | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def engine(self) -> SweepEngine:
        with self.lock:
            if self._engine is None:
                # Optuna takes a few tenths of a second to import: a server with no sweep never pays it
                from modelyard.services.sweep_engine import SweepEngine

                self._engine = SweepEngine(self.db, submit=self._submit, stop=self._stop, lock=self.lock)
            return self._engine

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelyard-sweeps", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._engine is not None:
            self._engine.close()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step_all()
            except Exception:  # a loop boundary: one bad pass must not end the sweeps
                log.exception("sweep pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def step_all(self) -> None:
        for sweep in store_sweeps.running_sweeps(self.db):
            if self._stopping.is_set():
                return
            try:
                self.engine.step(sweep.id)
            except Exception:  # one sweep's failure must not hold up the others
                log.exception("sweep %s: pass failed", sweep.id)

    def study(self, sweep: Sweep) -> optuna.Study:
        return self.engine.study(sweep)

    def end(self, sweep: Sweep, user: User, state: str, *, message: str) -> bool:
        """End the sweep (``stopped`` or ``failed``): its trials' jobs are stopped, its running trials FAIL."""
        return self.engine.end(sweep, user, state, message=message)
