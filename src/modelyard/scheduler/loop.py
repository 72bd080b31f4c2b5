"""The scheduling loop: applies the policy, launches supervisors, notices lost ones.

At start (``recover``) the executor says what became of each unfinished attempt
it started before the server stopped: those found again report on, those that
never started go back to the queue, the others end LOST. Each ``tick`` then
refreshes ``capacity`` from the executor (nodes join and leave a cluster),
(1) ends attempts whose supervisor (of any node rank) is gone or silent past the
heartbeat timeout (LOST, retried if the job has retries left), killing the
supervisor and its command first where the executor can reach them, so that
two attempts of a job never run at once, then (2) asks
the pure policy for placements and launches each, then (3) starts the
housekeeping (ended attempts' logs to the artifact store, retention) when it
is due, on a thread of its own: a pass never waits for it, and only one
runs at a time. It runs on a timer and whenever ``wake`` is called (after a submit, a restart or an attempt's end).
The policy is given each user's quota (read every pass: a few rows) and their
fair-share usage (scheduler/fairshare.py; read at most every
``FAIRSHARE_EVERY`` seconds, as it sums attempts).

The queue is read incrementally (``QueueView``): the whole queue once, then
per pass only the jobs named by state-change events newer than the last one
seen. With 10,000 queued jobs a full read costs ~0.3 s a pass here (a row and
a Resources per job); an incremental one, two small queries.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from modelyard.executors.base import Executor, Found
from modelyard.executors.capacity import Capacity
from modelyard.jobs import JobState, TerminationReason
from modelyard.jobs.nodes import NodeSlice
from modelyard.scheduler import fairshare, policy
from modelyard.scheduler.contact import ContactTimes
from modelyard.scheduler.launch import LaunchContext, build_launch
from modelyard.db import jobs as store_jobs
from modelyard.db import quotas as store_quotas
from modelyard.db import ranks as store_ranks
from modelyard.db.engine import Database
from modelyard.db.records import Attempt, Job
from modelyard.db.users import new_token

log = logging.getLogger("modelyard.scheduler")

# a supervisor whose process is gone, but whose last report is this recent, may
# still have its final batch in flight; past this it is lost
DEAD_PROCESS_GRACE = 3.0
# seconds between housekeeping runs (an ended attempt's log leaves the db within about this)
HOUSEKEEPING_EVERY = 2.0


class SchedulerLoop:
    FAIRSHARE_EVERY = 30.0  # seconds between two reads of the users' usage

    def __init__(
        self, db: Database, executor: Executor, capacity: Capacity | None, ctx: LaunchContext, *,
        heartbeat_timeout: float, on_final: Callable[[int, JobState], None] | None = None,
        interval: float = 1.0, clock: Callable[[], float] = time.time,
        housekeeping: Callable[[float], None] | None = None, housekeeping_every: float = HOUSEKEEPING_EVERY,
    ) -> None:
        self.db, self.executor, self.ctx = db, executor, ctx
        # a fixed capacity (tests, benchmarks) is kept; None: the executor's, refreshed every pass
        self.fixed_capacity = capacity is not None
        self.capacity = capacity if capacity is not None else executor.capacity()
        self.heartbeat_timeout = heartbeat_timeout
        self.on_final = on_final or (lambda job_id, state: None)
        self.interval = interval
        self.clock = clock
        # after a restart, silence while the server was down is not the supervisors' fault
        self.started_at = clock()
        self.contacts = ContactTimes()  # reports received, even those the database could not store
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self.queue = QueueView(db)
        self.usage: dict[str, float] = {}  # user -> decayed GPU-hours, as of usage_at
        self.usage_at: float | None = None
        self.housekeeping = housekeeping
        self.housekeeping_every = housekeeping_every
        self._housekeeping_at = -float("inf")
        self._housekeeper: threading.Thread | None = None

    def start(self) -> None:
        self.recover()  # before any new placement, as ray's job manager recovers its running jobs
        self._thread = threading.Thread(target=self._run, name="modelyard-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(10)
        if self._housekeeper is not None:
            self._housekeeper.join(10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # loop boundary: log and go on, one bad pass must not stop scheduling
                log.exception("scheduler pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def tick(self, now: float | None = None) -> None:
        with self._tick_lock:
            now = self.clock() if now is None else now
            if not self.fixed_capacity:
                self.capacity = self.executor.capacity()
            self.reap_lost(now)
            self.reap_lost_ranks(now)
            self.schedule(now)
            self.start_housekeeping(now)

    def start_housekeeping(self, now: float) -> bool:
        """Start a housekeeping run if one is due and none is running; True if one was started."""
        if self.housekeeping is None or now - self._housekeeping_at < self.housekeeping_every:
            return False
        if self._housekeeper is not None and self._housekeeper.is_alive():
            return False
        self._housekeeping_at = now
        work = self.housekeeping

        def run() -> None:
            try:
                work(now)
            except Exception:  # loop boundary: the next run tries again
                log.exception("housekeeping failed")

        self._housekeeper = threading.Thread(target=run, name="modelyard-housekeeping", daemon=True)
        self._housekeeper.start()
        return True

    def recover(self, now: float | None = None) -> None:
        """What became of the attempts this executor started before the server (re)started."""
        now = self.clock() if now is None else now
        mine = [a for a in store_jobs.active_attempts(self.db) if a.executor == self.executor.name]
        if not mine:
            return
        for r in self.executor.recover(mine):
            if r.found is Found.REATTACH:
                log.info("job %s attempt %s: its supervisor is found again", r.attempt.job_id, r.attempt.number)
            elif r.found is Found.REQUEUE and store_jobs.requeue_unstarted(self.db, r.attempt, r.message, now=now):
                log.warning("job %s attempt %s requeued: %s", r.attempt.job_id, r.attempt.number, r.message)
                self.wake()
            elif r.found is Found.LOST:
                self._lose(r.attempt, r.message, now)

    def _lose(self, attempt: Attempt, message: str, now: float) -> None:
        # Killed before it is ended: ending may requeue the job, and its next attempt must
        # not start on these GPUs, into the same outputs, while this one's command runs on.
        if attempt.executor == self.executor.name and not self.executor.kill(attempt):
            message += " (its command could not be reached to kill it)"
        final = store_jobs.end_attempt(self.db, attempt, TerminationReason.SUPERVISOR_LOST, message=message, now=now)
        log.warning("job %s attempt %s lost: %s", attempt.job_id, attempt.number, message)
        if final is not None:
            self.on_final(attempt.job_id, final)

    def reap_lost(self, now: float) -> None:
        active = store_jobs.active_attempts(self.db)
        self.contacts.keep_only(a.id for a in active)
        for attempt in active:
            heard = self.contacts.last(attempt.id, attempt.last_heartbeat)
            silent_for = now - max(heard, self.started_at)
            alive = self.executor.alive(attempt) if attempt.executor == self.executor.name else None
            if alive is False and now - heard > DEAD_PROCESS_GRACE:
                message = "its supervisor process is gone"
            elif silent_for > self.heartbeat_timeout:
                message = f"its supervisor sent nothing for {silent_for:.0f}s"
            else:
                continue
            self._lose(attempt, message, now)

    def reap_lost_ranks(self, now: float) -> None:
        """End each multi-node attempt one of whose node ranks past 0 went silent past the heartbeat
        timeout (db/ranks.py): the whole attempt is killed, then LOST (or retried, all ranks together)."""
        seen: set[int] = set()
        for r in store_ranks.live_ranks(self.db):
            heard = self.contacts.last((r.attempt.id, r.rank), r.last_heartbeat)
            silent_for = now - max(heard, self.started_at)
            if r.attempt.id in seen or silent_for <= self.heartbeat_timeout:
                continue
            seen.add(r.attempt.id)
            message = f"node rank {r.rank} (node {r.node}): its supervisor sent nothing for {silent_for:.0f}s"
            # killed before it is ended, as in reap_lost: a retry must not start beside its commands
            if r.attempt.executor == self.executor.name and not self.executor.kill(r.attempt):
                message += " (its commands could not be reached to kill them)"
            final = store_jobs.end_attempt(self.db, r.attempt, TerminationReason.SUPERVISOR_LOST, message=message,
                                           now=now)
            log.warning("job %s attempt %s lost: %s", r.attempt.job_id, r.attempt.number, message)
            if final is not None:
                self.on_final(r.attempt.job_id, final)

    def schedule(self, now: float) -> None:
        pending = self.queue.refresh(now)
        if not pending:
            return
        running = [running_job(a) for a in store_jobs.running_allocations(self.db)]
        quotas, default = user_quotas(self.db, self.ctx.settings.default_quota)
        for placement in policy.schedule(pending, running, self.capacity, now=now, quotas=quotas,
                                         default_quota=default, usage=self.fair_usage(now)):
            self._launch(placement.job_id, placement.slices, now)

    def fair_usage(self, now: float) -> dict[str, float]:
        """Each user's decayed GPU-hours, read again when older than FAIRSHARE_EVERY."""
        if self.usage_at is None or not 0 <= now - self.usage_at < self.FAIRSHARE_EVERY:
            self.usage = recent_usage(self.db, now, self.ctx.settings.fairshare_halflife)
            self.usage_at = now
        return self.usage

    def _launch(self, job_id: int, slices: tuple[NodeSlice, ...], now: float) -> None:
        token = new_token()
        placed = store_jobs.place(self.db, job_id, slices=slices, token=token, executor=self.executor.name, now=now)
        if placed is None:
            return  # stopped meanwhile
        job, attempt = placed
        try:
            handle = self.executor.start(build_launch(self.ctx, job, attempt, token))
        except Exception as exc:  # the launch failed: the attempt fails, with the reason kept
            log.exception("could not launch job %s", job_id)
            final = store_jobs.end_attempt(
                self.db, attempt, TerminationReason.START_FAILED, message=f"could not start the supervisor: {exc}")
            if final is not None:
                self.on_final(job_id, final)
            return
        store_jobs.set_handle(self.db, attempt.id, handle, now=self.clock())  # after start(), which takes a while


class QueueView:
    """The queued jobs as the policy sees them, kept current from the events table.

    Every state change is an event row written in the same transaction as the
    change, so the jobs named by events past ``cursor`` are the only ones whose
    place in the queue can have changed. On SQLite (one writer) event ids commit
    in order; on PostgreSQL a transaction may commit a smaller id after a larger
    one is visible, so the last ``PG_LOOKBACK`` ids are read again each pass.
    A full read every ``RESYNC_EVERY`` seconds bounds any other drift.
    """

    PG_LOOKBACK = 200
    RESYNC_EVERY = 60.0
    PAGE = 5000

    def __init__(self, db: Database) -> None:
        self.db = db
        self.jobs: dict[int, policy.QueuedJob] = {}
        self.cursor: int | None = None  # the newest event applied
        self.synced_at = 0.0

    def refresh(self, now: float) -> list[policy.QueuedJob]:
        due = self.cursor is None or now - self.synced_at > self.RESYNC_EVERY or now < self.synced_at
        if due:
            self._resync(now)
        else:
            self._apply_events()
        return list(self.jobs.values())

    def _resync(self, now: float) -> None:
        cursor = store_jobs.last_event_id(self.db)  # before the read: what happens meanwhile is replayed
        self.jobs = {q.id: queued_job(q) for q in store_jobs.queued_jobs(self.db)}
        self.cursor, self.synced_at = cursor, now

    def _apply_events(self) -> None:
        assert self.cursor is not None
        start = self.cursor if self.db.is_sqlite else max(0, self.cursor - self.PG_LOOKBACK)
        latest: dict[int, tuple[int, JobState]] = {}
        while True:
            page = store_jobs.events_since(self.db, start, limit=self.PAGE)
            for ev in page:
                latest[ev.job_id] = (ev.id, ev.to_state)
            if len(page) < self.PAGE:
                break
            start = page[-1].id
        for job_id, (event_id, state) in latest.items():
            queued = state is JobState.QUEUED
            if event_id <= self.cursor and queued == (job_id in self.jobs):
                continue  # seen before (the PostgreSQL look-back)
            job = store_jobs.get_job(self.db, job_id) if queued else None
            if job is not None and job.state is JobState.QUEUED:
                self.jobs[job_id] = _queued(job)
            else:
                self.jobs.pop(job_id, None)
        if latest:
            self.cursor = max(self.cursor, *(event_id for event_id, _ in latest.values()))


def user_quotas(db: Database, default: dict[str, float]) -> tuple[dict[str | None, policy.Quota], policy.Quota | None]:
    """The policy's quotas: per user with one of their own (over the default), and the default."""
    own = {str(uid): policy.Quota.of(q, default) for uid, q in store_quotas.quota_rows(db).items()}
    return own, (policy.Quota.of({}, default) if default else None)


def recent_usage(db: Database, now: float, halflife: float, *, user_id: int | None = None) -> dict[str, float]:
    """Per user (as the policy names them), their fair-share usage: decayed GPU-hours."""
    rows = store_quotas.attempt_spans(db, since=now - fairshare.FORGOTTEN_AFTER * halflife, user_id=user_id)
    spans = (fairshare.Span(str(r.user_id), r.gpus, r.cpus, r.nodes, r.started_at, r.ended_at) for r in rows)
    return fairshare.usage(spans, now, halflife)


def _queued(job: Job) -> policy.QueuedJob:
    return policy.QueuedJob(id=job.id, resources=job.resources, priority=job.priority, order=job.queued_at,
                            max_runtime=job.spec.max_runtime, user=str(job.user_id), nodes=job.spec.nodes,
                            labels=job.spec.node_labels)


def queued_job(q: store_jobs.QueuedJob) -> policy.QueuedJob:
    """The policy's view of a queued job as the store lists it."""
    return policy.QueuedJob(id=q.id, resources=q.resources, priority=q.priority, order=q.queued_at,
                            max_runtime=q.max_runtime, user=str(q.user_id), nodes=q.nodes, labels=q.node_labels)


def running_job(a: store_jobs.Allocation) -> policy.RunningJob:
    """The policy's view of an active attempt's allocation."""
    return policy.RunningJob(id=a.job_id, resources=a.resources, slices=a.slices, expected_end=a.expected_end,
                             user=str(a.user_id))
