"""A scheduling pass while retention has work to do: ``python -m bench.retention_pass`` prints JSON.

500 ended jobs, each with 20 output files and 2,000 log lines in the db, are past
``MODELYARD_RETENTION=outputs=1s,logs=1s``; the scheduler's passes are timed
before and while the housekeeping (started by the first pass, on its own thread)
archives their logs and removes their outputs, and the time it took.
"""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from modelyard.config import Settings
from modelyard.executors.base import Found, Recovery
from modelyard.executors.capacity import detect_capacity
from modelyard.jobs import JobSpec, TerminationReason
from modelyard.artifacts.keys import attempt_output_prefix
from modelyard.db import jobs as store_jobs
from modelyard.db import reports
from modelyard.db import removals as store_removals
from modelyard.db.users import create_user
from modelyard.server.platform import Platform

JOBS, FILES, LINES = 500, 20, 2000


class Idle:
    name = "local"

    def __init__(self) -> None:
        self._capacity = detect_capacity("gpus=0,cpus=4,memory=8G")

    def capacity(self):  # type: ignore[no-untyped-def]
        return self._capacity

    def recover(self, attempts):  # type: ignore[no-untyped-def]
        return [Recovery(a, Found.LOST, "bench") for a in attempts]

    def start(self, launch):  # type: ignore[no-untyped-def]
        raise RuntimeError("bench: nothing runs")

    def cancel(self, attempt) -> None:  # type: ignore[no-untyped-def]
        pass

    def kill(self, attempt) -> bool:  # type: ignore[no-untyped-def]
        return True

    def alive(self, attempt):  # type: ignore[no-untyped-def]
        return None

    def close(self) -> None:
        pass


def _pass_ms(p: Platform, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        p.scheduler.tick()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="retention-pass-"))
    settings = Settings.from_env({"MODELYARD_HOME": str(home), "MODELYARD_RETENTION": "outputs=1s,logs=1s",
                                  "MODELYARD_CAPACITY": "gpus=0,cpus=4,memory=8G"})
    p = Platform(settings, server_url="http://127.0.0.1:1", executor=Idle())  # type: ignore[arg-type]
    user, _ = create_user(p.db, "bench", admin=True)
    spec = JobSpec.model_validate({"command": ["true"]})
    for i in range(JOBS):
        job = store_jobs.create_job(p.db, user=user, spec=spec, snapshot_key=None)
        _job, a = store_jobs.place(p.db, job.id, token=f"t{i}", executor="local")  # type: ignore[misc]
        reports.apply_report(p.db, a, {"seq": 1, "logs": [[1.0, "stdout", f"line {k}"] for k in range(LINES)]})
        store_jobs.end_attempt(p.db, a, TerminationReason.EXIT_ZERO, exit_code=0, now=time.time() - 10)
        for f in range(FILES):
            p.storage.put_bytes(b"x" * 1024, f"{attempt_output_prefix(job.id, 1)}/f{f}.bin")
    p.scheduler.housekeeping = None  # first: passes with nothing of the housekeeping's
    idle = _pass_ms(p, 50)
    p.scheduler.housekeeping = p.cleanup.housekeeping
    started = time.perf_counter()
    busy = _pass_ms(p, 1)  # this one starts the housekeeping
    thread = p.scheduler._housekeeper
    while thread is not None and thread.is_alive():
        busy += _pass_ms(p, 1)
    took = time.perf_counter() - started
    removed, _ = store_removals.list_removals(p.db, limit=1)
    print(json.dumps({"jobs": JOBS, "pass_ms_idle_median": round(statistics.median(idle), 2),
                      "pass_ms_during_housekeeping_median": round(statistics.median(busy), 2),
                      "pass_ms_during_housekeeping_max": round(max(busy), 2), "passes_during": len(busy),
                      "housekeeping_s": round(took, 2), "removal_records": removed[0].id if removed else 0},
                     indent=1))
    p.close()


if __name__ == "__main__":
    main()
