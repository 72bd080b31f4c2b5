"""Clean-up and disk: removing jobs (``rm``), retention (MODELYARD_RETENTION), an ended attempt's log
leaving the db for the artifact store, reading logs wherever they are, and the disk used.

The API routes and the web pages both call this; nothing here knows HTTP. What
is removed is recorded in ``removals`` (db/removals.py) with its bytes, why
(``rm`` | ``retention``) and who asked. Kinds of data, as ``removals.what``
and MODELYARD_RETENTION name them: ``outputs`` (artifacts under the job's
prefix that are neither its log nor its final/), ``final`` (its final/),
``logs`` (db lines, the archive, the supervisors' log.txt), ``metrics`` (metric
chunks and system samples), ``run_folders`` (this machine's home/runs/...),
``snapshot`` (its code, when no other job names it), ``job`` (the row).
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.artifacts import logarchive
from modelyard.artifacts.keys import attempt_prefix, is_final_key, job_prefix
from modelyard.artifacts.store import ArtifactStore, Entry
from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.scheduler.launch import run_dir_name
from modelyard.db import jobs as store_jobs
from modelyard.db import ranks as store_ranks
from modelyard.db import removals as store_removals
from modelyard.db import reports
from modelyard.db.engine import Database
from modelyard.db.records import Attempt, Job, User
from modelyard.server.serialize import iso

log = logging.getLogger("modelyard.cleanup")

ARCHIVE_BATCH = 20  # ended attempts' logs moved out per housekeeping run
ARCHIVE_FULL_SCAN = 600.0  # seconds between looks at every ended attempt (else: those ended lately)
RETENTION_BATCH = 50  # jobs per kind per retention run
DISK_TTL = 30.0  # seconds the disk figures are reused: listing S3 on every page view would be slow and costly
LOG_NAMES = ("log.txt", "log.jsonl", "log.idx")


def retention_every(retention: dict[str, float]) -> float:
    """How often retention runs: a tenth of the shortest age, between 1 s and 5 min."""
    return min(300.0, max(1.0, min(retention.values()) / 10)) if retention else 300.0


def _is_log_key(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return "/attempts/" in path and path.count("/") == 4 and (name in LOG_NAMES or
                                                              (name.startswith("log-node") and name.endswith(".txt")))


@dataclass
class Sorted:
    """A job's keys in the store, by kind."""

    logs: list[Entry]
    final: list[Entry]
    outputs: list[Entry]


class CleanupService:
    def __init__(self, db: Database, storage: ArtifactStore, settings: Settings, *,
                 clock: Any = time.time) -> None:
        self.db, self.storage, self.settings = db, storage, settings
        self.clock = clock
        self._disk: tuple[float, dict[str, Any]] | None = None
        self._disk_lock = threading.Lock()
        self._retention_at = 0.0
        self._archive_scan_at = -float("inf")  # the last look at every ended attempt for lines in the db

    # -- rm ----------------------------------------------------------------------------------

    def remove_job(self, user: User, job_id: int, *, keep_final: bool) -> dict[str, Any]:
        """``modelyard rm``: everything of an ended job of ``user``'s (admin: anyone's), its final/
        too unless ``keep_final``; CONFLICT while it may still run; what went, with its bytes."""
        job = store_jobs.get_job(self.db, job_id, user=user)
        if job.removed_at is not None and keep_final:
            raise ModelyardError(ErrorCode.CONFLICT, f"job {job_id} was removed already (its final/ is kept)")
        if job.removed_at is None and store_removals.mark_removed(self.db, job_id, now=self.clock()) is None:
            raise not_found(f"job {job_id}")  # removed meanwhile
        rows = self._remove(job, keep_final=keep_final, reason="rm", actor=user.name)
        return {"job_id": job_id, "kept_final": keep_final,
                "removed": [{"what": r["what"], "bytes": r["bytes"], "detail": r["detail"]} for r in rows],
                "bytes": sum(r["bytes"] for r in rows)}

    def _remove(self, job: Job, *, keep_final: bool, reason: str, actor: str | None) -> list[dict[str, Any]]:
        keys = self._sorted(job)
        attempts = store_jobs.job_attempts(self.db, job.id)
        out = [
            self._drop_keys(job, "outputs", keys.outputs, reason, actor),
            self._drop_logs(job, attempts, keys.logs, reason, actor),
            self._drop_metrics(job, reason, actor),
            self._drop_run_folders(job, attempts, reason, actor),
            self._drop_snapshot(job, reason, actor),
        ]
        if not keep_final:
            out.append(self._drop_keys(job, "final", keys.final, reason, actor))
            self.storage.delete_prefix(job_prefix(job.id))  # the folders left empty
            store_removals.delete_job_row(self.db, job.id)
            out.append(self._row(job, "job", 0, f"job {job.id} ({job.name})", reason, actor))
        else:
            out.append(self._row(job, "job", 0, f"job {job.id} ({job.name}): all but its final/ "
                                 f"({len(keys.final)} files)", reason, actor))
        rows = [r for r in out if r is not None]
        store_removals.record(self.db, rows, now=self.clock())
        log.info("job %s removed (%s, by %s): %d bytes", job.id, reason, actor or "the platform",
                 sum(r["bytes"] for r in rows))
        return rows

    def _sorted(self, job: Job) -> Sorted:
        prefix = job_prefix(job.id)
        keys = Sorted([], [], [])
        for e in self.storage.list(prefix):
            key = Entry(f"{prefix}/{e.path}", e.size, e.mtime)
            if _is_log_key(key.path):
                keys.logs.append(key)
            elif is_final_key(key.path, job.id, job.attempt):
                keys.final.append(key)
            else:
                keys.outputs.append(key)
        return keys

    def _row(self, job: Job, what: str, size: int, detail: str, reason: str, actor: str | None) -> dict[str, Any]:
        return {"job_id": job.id, "user_id": job.user_id, "what": what, "detail": detail, "bytes": int(size),
                "reason": reason, "actor": actor}

    def _drop_keys(self, job: Job, what: str, keys: list[Entry], reason: str,
                   actor: str | None) -> dict[str, Any] | None:
        if not keys and reason == "rm":
            return None
        self.storage.delete_keys([k.path for k in keys])
        return self._row(job, what, sum(k.size for k in keys), f"{len(keys)} files", reason, actor)

    def _drop_logs(self, job: Job, attempts: list[Attempt], keys: list[Entry], reason: str,
                   actor: str | None) -> dict[str, Any] | None:
        lines = sum(store_removals.purge_logs(self.db, a.id) for a in attempts)
        self.storage.delete_keys([k.path for k in keys])
        size = lines + sum(k.size for k in keys)
        if not size and reason == "rm":
            return None
        return self._row(job, "logs", size, f"{len(attempts)} attempts' logs", reason, actor)

    def _drop_metrics(self, job: Job, reason: str, actor: str | None) -> dict[str, Any] | None:
        size = store_removals.purge_metrics(self.db, job.id)
        charted = sys.modules.get("modelyard.server.downsample")  # numpy's: loaded once a chart was read
        if charted is not None:
            charted.SERIES.forget(self.db, job.id)
        if not size and reason == "rm":
            return None
        return self._row(job, "metrics", size, "metric series and samples", reason, actor)

    def _drop_run_folders(self, job: Job, attempts: list[Attempt], reason: str,
                          actor: str | None) -> dict[str, Any] | None:
        """This machine's run folders of the job (kept after a failed upload; on a cluster each node's
        supervisor removes its own after its sync)."""
        size, gone = 0, []
        for a in attempts:
            for rank in range(a.nnodes):
                folder = self.settings.runs_dir / run_dir_name(job.id, a.number, rank)
                if folder.is_dir():
                    size += folder_bytes(folder)
                    shutil.rmtree(folder, ignore_errors=True)
                    gone.append(folder.name)
        if not gone:
            return None
        return self._row(job, "run_folders", size, ", ".join(gone), reason, actor)

    def _drop_snapshot(self, job: Job, reason: str, actor: str | None) -> dict[str, Any] | None:
        key = job.snapshot_key
        if key is None or store_removals.snapshot_in_use(self.db, key, besides=job.id):
            return None  # shared by content: another job's code too
        try:
            size = self.storage.size(key)
        except ModelyardError:
            size = 0
        store_removals.forget_snapshot(self.db, job.id)
        self.storage.delete_prefix(key)
        return self._row(job, "snapshot", size, key, reason, actor)

    # -- retention ---------------------------------------------------------------------------

    def apply_retention(self, now: float | None = None) -> int:
        """One batch of MODELYARD_RETENTION's work; returns the jobs it touched."""
        now = self.clock() if now is None else now
        ages = self.settings.retention
        touched = 0
        final_age = ages.get("final")
        for kind in ("jobs", "outputs", "logs", "metrics", "final"):
            if kind not in ages:
                continue
            for e in store_removals.expired_jobs(self.db, kind, cutoff=now - ages[kind], limit=RETENTION_BATCH,
                                                 include_removed=kind == "final"):
                try:
                    job = store_jobs.get_job(self.db, e.job_id)
                except ModelyardError:
                    continue  # removed meanwhile
                self._expire(job, kind, final_gone=final_age is not None and (job.ended_at or now) < now - final_age)
                touched += 1
        return touched

    def _expire(self, job: Job, kind: str, *, final_gone: bool) -> None:
        reason = "retention"
        if kind == "jobs":
            # the row stays only to hold a final/ that is kept
            keep = not final_gone and bool(self._sorted(job).final)
            if store_removals.mark_removed(self.db, job.id, now=self.clock()) is not None:
                self._remove(job, keep_final=keep, reason=reason, actor=None)
            return
        keys = self._sorted(job)
        if kind == "outputs":
            row = self._drop_keys(job, "outputs", keys.outputs, reason, None)
        elif kind == "final":
            row = self._drop_keys(job, "final", keys.final, reason, None)
        elif kind == "logs":
            row = self._drop_logs(job, store_jobs.job_attempts(self.db, job.id), keys.logs, reason, None)
        else:
            row = self._drop_metrics(job, reason, None)
        store_removals.record(self.db, [row] if row else [], now=self.clock())

    # -- the log, stored once ----------------------------------------------------------------

    def archive_logs(self, now: float | None = None) -> int:
        """Move ended attempts' lines from the db to the artifact store (one archive each), then drop
        the supervisors' own log.txt copies there; returns the attempts moved."""
        now = self.clock() if now is None else now
        moved = 0
        # Only attempts that ended lately, but for a whole look now and then (and at the first run): a
        # multi-node attempt is settled at the latest the heartbeat timeout after its end.
        whole = now - self._archive_scan_at > ARCHIVE_FULL_SCAN
        since = None if whole else now - 2 * self.settings.heartbeat_timeout - ARCHIVE_FULL_SCAN
        ended_logs = store_removals.logs_to_archive(self.db, limit=ARCHIVE_BATCH, ended_after=since)
        if whole and len(ended_logs) < ARCHIVE_BATCH:
            self._archive_scan_at = now
        for ended in ended_logs:
            a = store_jobs.get_attempt(self.db, ended.attempt_id)
            if a is None or not store_ranks.settled(self.db, a, now=now, grace=self.settings.heartbeat_timeout):
                continue  # a rank past 0 may still send its last lines
            a = store_jobs.get_attempt(self.db, ended.attempt_id)  # its count with those lines
            assert a is not None
            lines, _size = logarchive.write_archive(self.storage, a.job_id, a.number,
                                                    store_removals.log_rows(self.db, a.id))
            store_removals.purge_logs(self.db, a.id, below=a.log_count)
            raw = [f"{attempt_prefix(a.job_id, a.number)}/{e.path}" for e in
                   self.storage.list(attempt_prefix(a.job_id, a.number))
                   if e.path == "log.txt" or (e.path.startswith("log-node") and e.path.endswith(".txt"))]
            self.storage.delete_keys(raw)
            log.info("job %s attempt %s: %d log lines moved to the artifact store", a.job_id, a.number, lines)
            moved += 1
        return moved

    def read_log(self, attempt: Attempt, *, offset: int, limit: int, node: int | None) -> reports.LogPage:
        """A page of an attempt's log: from the db while its lines are there (a live attempt's always
        are), else from its archive in the artifact store."""
        ended = attempt.state.is_terminal()
        if not ended or store_removals.has_log_rows(self.db, attempt.id):
            page = reports.read_logs(self.db, attempt.id, offset=offset, limit=limit, node=node)
            if page.lines or not ended or offset >= attempt.log_count:
                return page
            # Empty short of the count: the archiver moved the lines between the look and the read
            # (it writes the archive whole before it purges), so they are in the archive now.
        if not logarchive.has_archive(self.storage, attempt.job_id, attempt.number):
            # removed (retention's logs=): nothing is left to read, and a follower must see the end
            return reports.LogPage([], max(offset, attempt.log_count))
        got = logarchive.read_archive(self.storage, attempt.job_id, attempt.number, offset=offset, limit=limit,
                                      node=node, total=attempt.log_count)
        return reports.LogPage(got.lines, got.next_offset)

    # -- housekeeping (called by the scheduler loop, off its pass) ---------------------------

    def housekeeping(self, now: float) -> None:
        self.archive_logs(now)
        if self.settings.retention and now - self._retention_at >= retention_every(self.settings.retention):
            self._retention_at = now
            while self.apply_retention(now) >= RETENTION_BATCH:
                pass

    # -- disk --------------------------------------------------------------------------------

    def disk(self, *, limit: int = 50, offset: int = 0, refresh: bool = False) -> dict[str, Any]:
        """Disk used per user, per job (largest first, ``limit`` from ``offset``), datasets, snapshots,
        caches, run folders and the db; computed at most every DISK_TTL seconds."""
        with self._disk_lock:
            now = self.clock()
            if refresh or self._disk is None or now - self._disk[0] > DISK_TTL:
                self._disk = (now, self._measure())
            at, full = self._disk
        jobs = full["jobs"]
        removals, _ = store_removals.list_removals(self.db, limit=20)
        return {**{k: v for k, v in full.items() if k != "jobs"}, "measured_at": iso(at),
                "jobs": jobs[offset:offset + limit], "jobs_total": len(jobs),
                "removals": [removal_to_dict(r) for r in removals]}

    def _measure(self) -> dict[str, Any]:
        per_job: dict[int, int] = defaultdict(int)
        per_dataset: dict[str, int] = defaultdict(int)
        snapshots = other = 0
        for e in self.storage.list(""):
            parts = e.path.split("/")
            if parts[0] == "jobs" and len(parts) > 2 and parts[1].isdigit():
                per_job[int(parts[1])] += e.size
            elif parts[0] == "datasets" and len(parts) > 2:
                per_dataset[parts[1]] += e.size
            elif parts[0] == "snapshots":
                snapshots += e.size
            else:
                other += e.size
        owners = store_removals.owners(self.db)
        per_user: dict[str, int] = defaultdict(int)
        for job_id, size in per_job.items():
            per_user[owners.get(job_id, (0, "(removed jobs)"))[1]] += size
        dataset_owners = store_removals.dataset_owners(self.db)
        jobs = sorted(({"id": j, "owner": owners.get(j, (0, None))[1], "bytes": b} for j, b in per_job.items()),
                      key=lambda x: (-x["bytes"], x["id"]))
        cache = self.settings.home / "cache"
        caches = {d.name: folder_bytes(d) for d in sorted(cache.iterdir()) if d.is_dir()} if cache.is_dir() else {}
        if self.settings.venv_cache_dir.parent != cache:
            caches["venvs"] = folder_bytes(self.settings.venv_cache_dir)
        return {
            "users": sorted(({"user": u, "bytes": b} for u, b in per_user.items()), key=lambda x: -x["bytes"]),
            "jobs": jobs,
            "datasets": sorted(({"name": n, "owner": dataset_owners.get(n), "bytes": b}
                                for n, b in per_dataset.items()), key=lambda x: -x["bytes"]),
            "snapshots_bytes": snapshots, "other_bytes": other,
            "store_bytes": sum(per_job.values()) + sum(per_dataset.values()) + snapshots + other,
            "caches": [{"name": n, "bytes": b} for n, b in caches.items()],
            "run_folders_bytes": folder_bytes(self.settings.runs_dir),
            "database_bytes": store_removals.database_bytes(self.db),
        }

    def removals(self, *, limit: int, offset: int, reason: str | None) -> dict[str, Any]:
        rows, total = store_removals.list_removals(self.db, limit=limit, offset=offset, reason=reason)
        return {"removals": [removal_to_dict(r) for r in rows], "total": total}


def removal_to_dict(r: store_removals.Removal) -> dict[str, Any]:
    return {"id": r.id, "job_id": r.job_id, "owner": r.owner, "what": r.what, "detail": r.detail,
            "bytes": r.bytes, "reason": r.reason, "actor": r.actor, "time": iso(r.time)}


def folder_bytes(folder: Path) -> int:
    """What the files under ``folder`` hold (links not followed); 0 when it is absent."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass  # removed while walked
    return total
