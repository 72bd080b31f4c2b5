"""The supervisor against a receiver that keeps the server's rules (docs/protocol.md "Reports"):
a batch is taken only one past the last; a refusal is answered without dropping or
reordering a batch, and without spinning; an attempt the server ended is killed at once."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from test_supervisor import Receiver, dead, job, kill_leftovers, launch  # noqa: F401  (kill_leftovers: the autouse fixture)



class StrictReceiver(Receiver):
    """Stores ``seq == last + 1`` only, answers a gap 409 with ``expected_seq``, a repeat 200."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: dict[int, tuple[int, dict[str, Any]]] = {}  # seq -> (status, body), answered once each
        self.always: tuple[int, dict[str, Any]] | None = None
        self.forget = 0  # drop this many stored batches before the next post (a restored database)
        self.gaps: list[int] = []
        self.after_gone: list[int] = []
        self.gone_from: int | None = None  # every seq from here on: 410

    def handle(self, path: str, auth: str, body: bytes) -> tuple[int, dict[str, Any]]:
        batch = json.loads(body)
        seq = batch["seq"]
        with self.lock:
            self.posts += 1
            while self.forget and self.batches:
                self.batches.pop(max(self.batches))
                self.forget -= 1
            last = max(self.batches, default=0)
            if self.always is not None:
                return self.always
            if seq <= last:
                return 200, {"stored": False, "stop": False}
            if self.gone_from is not None and seq >= self.gone_from:
                self.after_gone.append(seq)
                return 410, {"error": {"code": "gone", "message": "attempt 2 of job 7 has ended (lost)"}}
            if seq != last + 1:
                self.gaps.append(seq)
                return 409, {"error": {"code": "conflict", "message": "gap", "field": "seq"},
                             "expected_seq": last + 1}
            if seq in self.refuse:
                return self.refuse.pop(seq)
            self.batches[seq] = batch
        return 200, {"stored": True, "stop": False}

    def seqs(self) -> list[int]:
        with self.lock:
            return sorted(self.batches)


@pytest.fixture
def strict() -> Iterator[StrictReceiver]:
    r = StrictReceiver().start()
    yield r
    r.stop()


COUNTER = """
    import os, sys, time
    open({pid!r}, "w").write(str(os.getpid()))
    for i in range({n}):
        print(f"line {{i}}", flush=True)
        while {gate!r} and i == {n} // 2 and not os.path.exists({gate!r}):
            time.sleep(0.02)
        time.sleep(0.01)
"""


def counter(tmp_path: Path, n: int = 40, gate: str = "") -> list[str]:
    return job(tmp_path, COUNTER.format(pid=str(tmp_path / "pid"), n=n, gate=gate))


def test_batches_the_server_lost_are_filled_in_order_and_nothing_after_them_is_lost(
        tmp_path: Path, strict: StrictReceiver) -> None:
    gate = tmp_path / "gate"
    sup = launch(tmp_path, counter(tmp_path, gate=str(gate)), strict.url)
    wait_for(lambda: "line 20" in strict.texts() and len(strict.seqs()) >= 3, timeout=15, what="batches")
    strict.forget = 2  # the server's database came back from a backup two batches short
    gate.touch()
    assert sup.wait() == 0, sup.stderr
    seqs = strict.seqs()
    assert seqs == list(range(1, seqs[-1] + 1))  # no hole, in order
    assert strict.gaps  # the receiver did refuse a gap, and the supervisor recovered from it
    texts = strict.texts()
    assert [t for t in texts if t.startswith("line")][-19:] == [f"line {i}" for i in range(21, 40)]
    assert any("no longer has them" in t for t in strict.texts("stderr"))
    assert strict.exited() is not None and strict.exited()["reason"] == "exit_zero"


def test_a_refused_batch_is_sent_stripped_so_the_jobs_end_still_arrives(tmp_path: Path, strict: StrictReceiver) -> None:
    strict.refuse[1] = (422, {"error": {"code": "invalid", "message": "malformed report batch", "field": "batch"}})
    sup = launch(tmp_path, counter(tmp_path, n=5), strict.url)
    assert sup.wait() == 0, sup.stderr
    seqs = strict.seqs()
    assert seqs == list(range(1, seqs[-1] + 1))
    first = strict.ordered()[0]
    assert [e["type"] for e in first["events"]] == ["started"]  # its events kept
    assert "was refused by the server" in first["logs"][0][2]
    assert strict.exited() is not None and strict.exited()["reason"] == "exit_zero"


def test_a_permanent_refusal_ends_the_job_instead_of_spinning(tmp_path: Path, strict: StrictReceiver) -> None:
    strict.always = (401, {"error": {"code": "unauthenticated", "message": "unknown attempt or wrong token"}})
    sup = launch(tmp_path, job(tmp_path, f"""
        import os, time
        open({str(tmp_path / 'pid')!r}, "w").write(str(os.getpid()))
        time.sleep(600)
    """), strict.url)
    assert sup.wait(timeout=30) == 1
    assert strict.posts <= 6  # a few tries, not a loop
    assert "refused batch 1 3 times" in sup.stderr
    # the refusals may come before the command has even written its pid: look for it by its script
    wait_for(lambda: not _running(str(tmp_path / "job.py")), timeout=10, what="the command to be gone")


def _running(marker: str) -> list[int]:
    import psutil

    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and marker in (p.info["cmdline"] or []):
            found.append(p.pid)
    return found


def test_an_attempt_the_server_ended_is_killed_and_syncs_nothing_more(tmp_path: Path, strict: StrictReceiver) -> None:
    out = tmp_path / "run" / "output"
    argv = job(tmp_path, f"""
        import os, time
        open({str(tmp_path / 'pid')!r}, "w").write(str(os.getpid()))
        print("working", flush=True)
        while True:
            open(os.path.join(os.environ["MODELYARD_OUTPUT_DIR"], "late.txt"), "w").write(str(time.time()))
            time.sleep(0.05)
    """)
    sup = launch(tmp_path, argv, strict.url, stop_grace=30, sync_interval=0)
    wait_for(lambda: "working" in strict.texts(), timeout=15, what="the job to start")
    strict.gone_from = max(strict.seqs()) + 1  # the server declared the attempt lost
    assert sup.wait(timeout=15) == 1  # at once: not after stop_grace's 30 s
    assert dead(int((tmp_path / "pid").read_text()))
    assert strict.exited() is None  # no final report for an attempt that is over
    assert len(strict.after_gone) == 1  # told once, it sent nothing more
    assert (out / "late.txt").exists() and not sup.store.exists("jobs/7/outputs/late.txt")
    assert "takes no more reports" in (tmp_path / "run" / "log.txt").read_text()
