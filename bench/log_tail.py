"""The read of an ended attempt's last 200 log lines, a 57 MB log, from the db and from its archive.

``python -m bench.log_tail`` prints JSON: the medians (ms) of reading lines
``count-200 .. count`` through ``reports.read_logs`` (the db, as every log was
read before it moved out) and through ``logarchive.read_archive`` (the artifact
store, as an ended attempt's log is read now), and the time one housekeeping
run took to move it, and a scheduler-style pass measured while that run went on.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from modelyard.artifacts import logarchive
from modelyard.artifacts.store import ArtifactStore
from modelyard.db import jobs as store_jobs
from modelyard.db import reports
from modelyard.db import removals as store_removals
from modelyard.db.engine import Database
from modelyard.db.users import create_user
from modelyard.jobs import JobSpec

TARGET = 57 * 1024 * 1024
LINE = "step {i:08d} loss=0.1234567 lr=0.000100 grad_norm=1.2345 throughput=1234.5 samples/s " + "x" * 20


def _median_ms(fn, n: int = 30) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="log-tail-"))
    db = Database(f"sqlite:///{root / 'db.sqlite'}")
    db.migrate()
    store = ArtifactStore((root / "artifacts").as_uri())
    user, _ = create_user(db, "bench", admin=True)
    job = store_jobs.create_job(db, user=user, spec=JobSpec.model_validate({"command": ["true"]}), snapshot_key=None)
    _job, attempt = store_jobs.place(db, job.id, token="bench", executor="local")  # type: ignore[misc]
    count, size, seq = 0, 0, 1
    while size < TARGET:
        batch = [[time.time(), "stdout", LINE.format(i=count + k)] for k in range(20000)]
        size += sum(len(b[2]) + 1 for b in batch)
        reports.apply_report(db, store_jobs.get_attempt(db, attempt.id), {"seq": seq, "logs": batch})  # type: ignore[arg-type]
        count, seq = count + len(batch), seq + 1
    reports.apply_report(db, store_jobs.get_attempt(db, attempt.id),  # type: ignore[arg-type]
                         {"seq": seq, "events": [{"type": "exited", "exit_code": 0, "reason": "exit_zero"}]})
    db_ms = _median_ms(lambda: reports.read_logs(db, attempt.id, offset=count - 200, limit=200))
    t = time.perf_counter()
    lines, archived = logarchive.write_archive(store, job.id, attempt.number, store_removals.log_rows(db, attempt.id))
    write_s = time.perf_counter() - t
    passes: list[float] = []
    done = threading.Event()

    def purge() -> None:
        store_removals.purge_logs(db, attempt.id, below=count)
        done.set()

    threading.Thread(target=purge).start()
    while not done.is_set():  # what a scheduler pass does meanwhile: read the queue, write a little
        t = time.perf_counter()
        store_jobs.queued_jobs(db)
        store_jobs.set_handle(db, attempt.id, "bench")
        passes.append((time.perf_counter() - t) * 1000)
    store_ms = _median_ms(lambda: logarchive.read_archive(store, job.id, attempt.number, offset=count - 200,
                                                          limit=200, node=None, total=count))
    got = logarchive.read_archive(store, job.id, attempt.number, offset=count - 200, limit=200, node=None, total=count)
    assert [x["n"] for x in got.lines] == list(range(count - 200, count))
    print(json.dumps({"lines": count, "log_bytes": size, "archive_bytes": archived, "archived_lines": lines,
                      "last_200_from_db_ms": db_ms, "last_200_from_archive_ms": store_ms,
                      "archive_write_s": round(write_s, 2),
                      "pass_during_purge_ms_median": round(statistics.median(passes), 2) if passes else None,
                      "pass_during_purge_ms_max": round(max(passes), 2) if passes else None,
                      "python": sys.version.split()[0]}, indent=1))
    db.dispose()


if __name__ == "__main__":
    main()
