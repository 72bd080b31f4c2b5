"""A full disk (a 50 MB tmpfs as MODELYARD_HOME): said plainly, and nothing already stored is lost.

(i) a job that fills the disk with outputs ends ``failed`` ("no space left on device") within the
heartbeat timeout, never ``lost`` nor left ``running``, with every line it printed stored;
(ii) a submit or a snapshot upload on a full disk answers ``disk_full`` naming MODELYARD_HOME,
and leaves nothing half-written; (iii) lines printed while a filler file fills the disk are held
by the supervisor and, once the filler is gone, all arrive exactly once and in order; (iv) a
supervisor whose reports the server cannot store for twice the heartbeat timeout is not lost.
Unit cases: the Batcher and the OutputPump on a tiny full tmpfs.
The tmpfs mount needs root (as here and on CI): without it these fail, never skip.
"""
from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import orjson
import psycopg.errors
import sqlalchemy.exc
from conftest import wait_for
from servers import ServerProcess

from modelyard.server.disk import disk_full_error
from modelyard.supervisor.batch import Batcher
from modelyard.supervisor.disk import DiskWatch
from modelyard.supervisor.output import OutputPump

HEARTBEAT_TIMEOUT = 4.0


@contextmanager
def tmpfs(folder: Path, size: str = "50m") -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(path: Path) -> Path:
    """Write ``path`` until its disk has no byte left."""
    with open(path, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1):
            block = b"\0" * chunk
            try:
                while True:
                    f.write(block)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    return path


def start_server(tmp_path: Path, home: Path, heartbeat_timeout: float) -> ServerProcess:
    return ServerProcess(home, log_path=tmp_path / "server.log", env={
        "MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G",
        "MODELYARD_HEARTBEAT_TIMEOUT": str(heartbeat_timeout)}).start()


def submit(c, script: Path, *args: str) -> int:  # type: ignore[no-untyped-def]
    r = c.post("/jobs", json={"spec": {"command": [sys.executable, str(script), *args],
                                       "resources": {"cpus": 1}}})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def stored_lines(c, job_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    r = c.get(f"/jobs/{job_id}/logs", params={"limit": 10000})
    return [l["text"] for l in r.json()["lines"]] if r.status_code == 200 else [r.text]


def ended(c, job_id: int, seen: set[str]):  # type: ignore[no-untyped-def]
    """The job once it has ended; every state it was seen in goes into ``seen``."""
    job = c.get(f"/jobs/{job_id}").json()
    seen.add(job["state"])
    return job if job["state"] in ("succeeded", "failed", "stopped", "lost", "timed_out") else None


# (i): 200 numbered lines, then outputs until the disk is full, then it waits (as a job that
# retries its checkpoint would): the supervisor must end it.
FILLER_JOB = """
import os, sys, time
for i in range(200):
    print("line", i, flush=True)
out = os.environ["MODELYARD_OUTPUT_DIR"]
try:
    with open(os.path.join(out, "checkpoint.bin"), "wb") as f:
        while True:
            f.write(b"x" * (1 << 20))
            f.flush()
except OSError as e:
    open(sys.argv[1], "w").write(repr(time.time()))
    print("checkpoint failed:", e, flush=True)
time.sleep(120)
"""


def test_a_job_that_fills_the_disk_ends_failed_with_every_line_kept(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "home") as home:
        server = start_server(tmp_path, home, HEARTBEAT_TIMEOUT)
        try:
            script, full_at = tmp_path / "job.py", tmp_path / "full_at"
            script.write_text(FILLER_JOB)
            with server.client() as c:
                job_id = submit(c, script, str(full_at))
                seen: set[str] = set()
                job = wait_for(lambda: ended(c, job_id, seen), timeout=30, what="the job to end")
                stored_in = time.time() - float(full_at.read_text())  # to the failed state seen through the API
                ended_at = datetime.fromisoformat(job["ended_at"].replace("Z", "+00:00")).timestamp()
                took = ended_at - float(full_at.read_text())
                assert job["state"] == "failed", job
                assert "no space left on device" in job["message"].lower(), job
                assert job["attempts"][-1]["reason"] == "disk_full", job
                assert "lost" not in seen and len(job["attempts"]) == 1
                assert took < HEARTBEAT_TIMEOUT, f"took {took:.1f}s from the full disk to failed"
                assert stored_in < 2 * HEARTBEAT_TIMEOUT, f"{stored_in:.1f}s until the API said failed"
                lines = stored_lines(c, job_id)
                assert [l for l in lines if l.startswith("line ")] == [f"line {i}" for i in range(200)], lines
                print(f"disk full -> failed in {took:.2f}s (seen through the API after {stored_in:.2f}s); 200/200 lines kept")
        finally:
            server.stop()


TICKER_JOB = """
import os, sys, time
for i in range(int(sys.argv[2])):
    print("tick", i, flush=True)
    open(sys.argv[1] + ".tmp", "w").write(str(i + 1))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])  # the test never reads it half-written
    time.sleep(0.02)
"""


def test_lines_printed_while_the_disk_is_full_arrive_once_in_order_after(tmp_path: Path) -> None:
    # a long heartbeat timeout: this disk is full for a moment, not long enough to end the job
    with tmpfs(tmp_path / "home") as home:
        server = start_server(tmp_path, home, 60)
        try:
            script, printed = tmp_path / "ticker.py", tmp_path / "printed"
            script.write_text(TICKER_JOB)
            total = 400
            with server.client() as c:
                job_id = submit(c, script, str(printed), str(total))
                wait_for(lambda: len(stored_lines(c, job_id)) >= 20, timeout=30, what="the first lines")
                filler = fill(home / "filler")
                at_fill = int(printed.read_text())
                wait_for(lambda: int(printed.read_text()) >= at_fill + 60, timeout=30, what="lines on a full disk")
                filler.unlink()
                seen: set[str] = set()
                job = wait_for(lambda: ended(c, job_id, seen), timeout=60, what="the job to end")
                assert job["state"] == "succeeded" and "lost" not in seen, job
                lines = stored_lines(c, job_id)
                assert [l for l in lines if l.startswith("tick ")] == [f"tick {i}" for i in range(total)]
                # held in memory while the spool's disk was full, and said so once
                notes = [l for l in lines if "no space left on device for the spool" in l]
                assert len(notes) == 1, lines
        finally:
            server.stop()


def test_a_supervisor_reporting_to_a_full_database_is_not_lost(tmp_path: Path) -> None:
    # the database's disk full for over twice the heartbeat timeout, the run folders' disk not:
    # every report fails to be stored, yet each reached the server, so the job is not lost (without
    # the server's in-memory contact times it would be killed and ended lost once space returned)
    with tmpfs(tmp_path / "home") as home, tmpfs(home / "runs"):
        server = start_server(tmp_path, home, HEARTBEAT_TIMEOUT)
        try:
            script, printed = tmp_path / "ticker.py", tmp_path / "printed"
            script.write_text(TICKER_JOB)
            total = 600
            with server.client() as c:
                job_id = submit(c, script, str(printed), str(total))
                wait_for(lambda: len(stored_lines(c, job_id)) >= 20, timeout=30, what="the first lines")
                filler = fill(home / "filler")
                full_from = time.monotonic()
                wait_for(lambda: time.monotonic() - full_from > 2 * HEARTBEAT_TIMEOUT, timeout=30,
                         what="twice the heartbeat timeout")
                assert c.get(f"/jobs/{job_id}").json()["state"] == "running"
                filler.unlink()
                seen: set[str] = set()
                job = wait_for(lambda: ended(c, job_id, seen), timeout=60, what="the job to end")
                assert job["state"] == "succeeded" and "lost" not in seen, job
                lines = stored_lines(c, job_id)
                assert [l for l in lines if l.startswith("tick ")] == [f"tick {i}" for i in range(total)]
                assert "disk full: the disk of MODELYARD_HOME" in server.log_text()  # it was full, and said so
        finally:
            server.stop()


def _snapshot(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = os.urandom(size)  # incompressible: it takes its size on the disk
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_a_submit_on_a_full_disk_says_the_disk_of_modelyard_home_is_full(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "home") as home:
        server = start_server(tmp_path, home, 60)
        try:
            fill(home / "filler")
            with server.client() as c:
                r = c.post("/snapshots", content=_snapshot(1 << 20))
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "disk_full" and str(home) in r.json()["error"]["message"]
                # SQLite reuses free pages of its WAL first: submit until a write needs new space
                accepted = 0
                for _ in range(2000):
                    r = c.post("/jobs", json={"spec": {"command": ["true"], "env": {"PAD": "x" * 1000},
                                                       "resources": {"cpus": 1}}})
                    if r.status_code != 201:
                        break
                    accepted += 1
                assert r.status_code == 503, r.text
                error = r.json()["error"]
                assert error["code"] == "disk_full", error
                assert f"the disk of MODELYARD_HOME ({home}) is full" in error["message"]
                assert "database is unavailable" not in error["message"]
                (home / "filler").unlink()
                # the refused submit left no half-written job
                assert c.get("/jobs", params={"limit": 1}).json()["total"] == accepted
        finally:
            server.stop()


# -- the supervisor's parts on a tiny tmpfs -------------------------------------------------------

def test_batcher_holds_batches_in_memory_when_the_spool_is_full(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "spool", size="1m") as spool:
        b = Batcher(spool, interval=0.0)
        told: list[bool] = []
        b.on_enospc = lambda: told.append(True)
        b.add_log(1.0, "stdout", "before")
        b.cut_if_due(60)
        filler = fill(spool / "filler")
        for i in range(3):
            b.add_log(2.0 + i, "stdout", f"held {i}")
            b.cut_if_due(60)
        assert b.held == 3 and told
        assert sorted(p.name for p in spool.iterdir()) == ["000000000001.json", "filler"]  # nothing half-written
        filler.unlink()
        b.add_log(9.0, "stdout", "after")
        b.cut_if_due(60)
        bodies = []
        while (seq := b.oldest()) is not None:
            bodies.append(orjson.loads(b.body(seq)))
            b.acknowledged(seq)
        texts = [text for body in bodies for _t, _s, text in body["logs"]]
        assert [t for t in texts if not t.startswith("[modelyard]")] == ["before", "held 0", "held 1", "held 2", "after"]
        assert sum("no space left on device for the spool" in t for t in texts) == 1
        assert [body["seq"] for body in bodies] == list(range(1, len(bodies) + 1)) and b.held == 0


def test_output_pump_stops_log_txt_on_a_full_disk_and_still_reports_every_line(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "run", size="1m") as run:
        b = Batcher(tmp_path, max_items=100000, interval=60)
        pump = OutputPump(run / "log.txt", b)
        watch = DiskWatch(run)
        pump.on_enospc = watch.enospc
        fill(run / "filler")
        r_out, w_out = os.pipe()
        r_err, w_err = os.pipe()
        pump.start(os.fdopen(r_out, "rb"), os.fdopen(r_err, "rb"))
        with os.fdopen(w_out, "wb") as out:
            for i in range(20000):  # ~250 KB: more than log.txt's buffer, so its writes must fail
                out.write(f"line {i:08d}\n".encode())
        os.close(w_err)
        assert pump.join(timeout=30)
        pump.close()
        texts = [text for _t, _s, text in b.logs]
        assert [t for t in texts if t.startswith("line ")] == [f"line {i:08d}" for i in range(20000)]
        assert sum("log.txt stops here" in t for t in texts) == 1
        assert watch.seen and watch.probe() > 0  # a full disk, seen and still full
        pump.note("a note after the stop goes to the report only")
        assert b.logs[-1][2].endswith("a note after the stop goes to the report only")


def test_each_kind_of_full_disk_maps_to_disk_full_and_nothing_else_does() -> None:
    import sqlite3

    home = Path("/srv/modelyard")

    def wrapped(orig: Exception) -> sqlalchemy.exc.OperationalError:
        return sqlalchemy.exc.OperationalError("INSERT INTO log_lines ...", {}, orig)

    for exc in (OSError(errno.ENOSPC, "No space left on device"), wrapped(sqlite3.OperationalError("database or disk is full"))):
        err = disk_full_error(exc, home)
        assert err is not None and err.code.value == "disk_full" and err.http_status == 503
        assert "the disk of MODELYARD_HOME (/srv/modelyard) is full" in err.message
    pg = disk_full_error(wrapped(psycopg.errors.DiskFull("could not extend file")), home)  # SQLSTATE 53100
    assert pg is not None and "database server's disk is full" in pg.message
    for other in (OSError(errno.EACCES, "Permission denied"), wrapped(sqlite3.OperationalError("database is locked")),
                  wrapped(psycopg.errors.AdminShutdown("terminating connection"))):
        assert disk_full_error(other, home) is None
