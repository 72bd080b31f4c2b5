"""The supervisor as a real subprocess reporting to a real HTTP receiver (docs/protocol.md)."""
from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from conftest import kill_tree, wait_for

from modelyard.artifacts import ArtifactStore, make_snapshot
from modelyard.supervisor import run_local

# -- a report receiver -----------------------------------------------------------


class Receiver:
    """The report endpoint: records batches once per seq, like the server does."""

    def __init__(self, port: int = 0, *, stop_reply: bool = False, fail_after_store: int = 0) -> None:
        self.port = port
        self.stop_reply = stop_reply
        self.fail_after_store = fail_after_store  # answer 500 to this many stored posts (forces resends)
        self.batches: dict[int, dict[str, Any]] = {}
        self.posts = 0
        self.auth: set[str] = set()
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code, reply = receiver.handle(self.path, self.headers.get("Authorization", ""), body)
                data = json.dumps(reply).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def handle(self, path: str, auth: str, body: bytes) -> tuple[int, dict[str, Any]]:
        assert path == "/api/v1/attempts/att-1/report", path
        batch = json.loads(body)
        with self.lock:
            self.posts += 1
            self.auth.add(auth)
            stored = batch["seq"] not in self.batches
            self.batches.setdefault(batch["seq"], batch)
            if self.fail_after_store > 0:
                self.fail_after_store -= 1
                return 500, {"error": "flaky"}
        return 200, {"stored": stored, "stop": self.stop_reply}

    def ordered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [self.batches[s] for s in sorted(self.batches)]

    def logs(self, stream: str | None = None) -> list[list[Any]]:
        return [entry for b in self.ordered() for entry in b["logs"] if stream in (None, entry[1])]

    def texts(self, stream: str = "stdout") -> list[str]:
        return [e[2] for e in self.logs(stream)]

    def metrics(self) -> list[list[Any]]:
        """The points as rows ``[name, value, step, epoch, t]``, decoded from each batch's ``series``."""
        rows = []
        for b in self.ordered():
            assert "metrics" not in b  # the supervisor sends packed columns only
            for name, block in b["series"].items():
                cols = np.frombuffer(base64.b64decode(block["points"]), dtype="<f8").reshape(4, block["n"])
                for value, step, epoch, t in cols.T.tolist():
                    rows.append([name, value, None if step != step else int(step),
                                 None if epoch != epoch else int(epoch), t])
        return rows

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for b in self.ordered() for e in b["events"] if kind in (None, e["type"])]

    def exited(self) -> dict[str, Any] | None:
        finals = [b for b in self.ordered() if b["final"]]
        return finals[0]["events"][-1] if finals else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


# -- launching supervisors ---------------------------------------------------------


def job(tmp_path: Path, code: str, name: str = "job.py") -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code))
    return [sys.executable, str(path)]


def config(tmp_path: Path, argv: list[str], server_url: str | None, **overrides: Any) -> dict[str, Any]:
    store = tmp_path / "store"
    cfg: dict[str, Any] = {
        "job_id": "7", "attempt": 2, "attempt_id": "att-1", "server_url": server_url, "token": "tok-1",
        "storage_url": store.as_uri(), "snapshot_key": None, "workdir": str(tmp_path),
        "resume_prefix": None, "output_prefix": "jobs/7/outputs", "log_key": "jobs/7/attempts/2/log.txt",
        "run_dir": str(tmp_path / "run"), "argv": argv, "env": {"EXTRA": "yes"}, "gpus": [],
        "max_runtime": None, "sync_interval": 60, "stop_grace": 5, "heartbeat_interval": 0.3,
        "sample_interval": 0.2, "retry_max_backoff": 0.2, "final_deadline": 30,
    }
    cfg.update(overrides)
    return cfg


class Launched:
    def __init__(self, proc: subprocess.Popen[bytes], cfg: dict[str, Any], tmp_path: Path) -> None:
        self.proc, self.cfg, self.tmp_path = proc, cfg, tmp_path
        self.run_dir = Path(cfg["run_dir"])

    def wait(self, timeout: float = 20) -> int:
        rc = self.proc.wait(timeout)
        return rc

    @property
    def stderr(self) -> str:
        return (self.tmp_path / "supervisor.err").read_text(errors="replace")

    @property
    def store(self) -> ArtifactStore:
        return ArtifactStore(self.cfg["storage_url"])


_LAUNCHED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def kill_leftovers() -> Iterator[None]:
    """A failed test must not leave a supervisor retrying, or its job running, for an hour."""
    yield
    while _LAUNCHED:
        proc = _LAUNCHED.pop()
        if proc.poll() is not None:
            continue
        kill_tree(proc.pid)
        proc.wait()


def launch(tmp_path: Path, argv: list[str], server_url: str | None, **overrides: Any) -> Launched:
    cfg = config(tmp_path, argv, server_url, **overrides)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with open(tmp_path / "supervisor.out", "wb") as out, open(tmp_path / "supervisor.err", "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "modelyard.supervisor", str(path)],
                                stdout=out, stderr=err, start_new_session=True)
    _LAUNCHED.append(proc)
    return Launched(proc, cfg, tmp_path)


def run_to_end(tmp_path: Path, receiver: Receiver, argv: list[str], **overrides: Any) -> dict[str, Any]:
    sup = launch(tmp_path, argv, receiver.url, **overrides)
    assert sup.wait() == 0, sup.stderr
    exited = receiver.exited()
    assert exited is not None
    return exited


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- output ----------------------------------------------------------------------


def test_logs_metrics_and_events(tmp_path: Path, receiver: Receiver) -> None:
    argv = job(tmp_path, """
        import sys
        print("first")
        print('{"metric": "loss", "value": 0.5, "step": 1}')
        print('{"metric": "acc", "value": 1, "epoch": 2.0}')
        print('{"metric": "loss"}')
        print('{"metric": "loss", "value": "high"}')
        print('{"metric": "loss", "value": NaN}')
        print('{"metric": "loss", "value": 1.0, "step": 1.5}')
        print("to stderr", file=sys.stderr)
        print('{"metric": "err", "value": 1}', file=sys.stderr)
        for i in range(100):
            print(f"line {i}")
    """)
    exited = run_to_end(tmp_path, receiver, argv)
    assert exited["reason"] == "exit_zero" and exited["exit_code"] == 0
    out = receiver.texts("stdout")
    assert out[0] == "first"
    assert out[1:5] == ['{"metric": "loss"}', '{"metric": "loss", "value": "high"}',
                        '{"metric": "loss", "value": NaN}', '{"metric": "loss", "value": 1.0, "step": 1.5}']
    assert out[5:] == [f"line {i}" for i in range(100)]
    assert receiver.texts("stderr") == ["to stderr", '{"metric": "err", "value": 1}']
    times = [e[0] for e in receiver.logs("stdout")]
    assert times == sorted(times)
    assert [m[:4] for m in receiver.metrics()] == [["loss", 0.5, 1, None], ["acc", 1.0, None, 2]]
    started = receiver.events("started")
    assert len(started) == 1 and started[0]["pid"] > 0
    assert receiver.auth == {"Bearer tok-1"}
    seqs = sorted(receiver.batches)
    assert seqs == list(range(1, len(seqs) + 1))
    assert [s for s, b in receiver.batches.items() if b["final"]] == [seqs[-1]]


def test_long_lines_and_binary_survive(tmp_path: Path, receiver: Receiver) -> None:
    payload = b"start\n" + b"x" * 100_000 + b"\n" + b"bad \xff\xfe bytes\n" + b"caf\xc3\xa9\n" + b"no newline at end"
    (tmp_path / "payload.bin").write_bytes(payload)
    argv = job(tmp_path, f"""
        import sys
        sys.stdout.buffer.write(open({str(tmp_path / 'payload.bin')!r}, "rb").read())
    """)
    exited = run_to_end(tmp_path, receiver, argv)
    assert exited["reason"] == "exit_zero"
    assert not (tmp_path / "run").exists()  # everything of it is in the store: the run folder is gone
    store = ArtifactStore((tmp_path / "store").as_uri())
    assert store.read_bytes("jobs/7/attempts/2/log.txt") == payload
    assert receiver.texts() == ["start", "x" * 100_000, "bad \\xff\\xfe bytes", "café", "no newline at end"]


@pytest.mark.parametrize("gpus,expected", [([], ""), ([1, 3], "1,3")])
def test_job_environment(tmp_path: Path, receiver: Receiver, gpus: list[int], expected: str) -> None:
    store = ArtifactStore((tmp_path / "store").as_uri())
    store.put_bytes(b"old weights", "jobs/3/outputs/model.pt")
    argv = job(tmp_path, """
        import json, os
        keys = ["MODELYARD_JOB_ID", "MODELYARD_ATTEMPT", "MODELYARD_OUTPUT_DIR", "MODELYARD_RESUME_DIR",
                "CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED", "EXTRA"]
        env = {k: os.environ.get(k) for k in keys}
        env["cwd"] = os.getcwd()
        env["resumed"] = open(os.path.join(os.environ["MODELYARD_RESUME_DIR"], "model.pt")).read()
        open(os.path.join(os.environ["MODELYARD_OUTPUT_DIR"], "env.json"), "w").write(json.dumps(env))
    """)
    run_to_end(tmp_path, receiver, argv, gpus=gpus, resume_prefix="jobs/3/outputs")
    env = json.loads(store.read_bytes("jobs/7/outputs/env.json"))
    run = tmp_path / "run"
    assert env == {
        "MODELYARD_JOB_ID": "7", "MODELYARD_ATTEMPT": "2", "MODELYARD_OUTPUT_DIR": str(run / "output"),
        "MODELYARD_RESUME_DIR": str(run / "resume"), "CUDA_VISIBLE_DEVICES": expected,
        "PYTHONUNBUFFERED": "1", "EXTRA": "yes", "cwd": str(tmp_path), "resumed": "old weights",
    }


def test_runs_the_snapshot_in_run_dir_code(tmp_path: Path, receiver: Receiver) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("import os; print(sorted(os.listdir('.'))); print(os.getcwd())")
    (src / "junk.log").write_text("x")
    (src / ".gitignore").write_text("*.log\n")
    store = ArtifactStore((tmp_path / "store").as_uri())
    with open(tmp_path / "snap.tar.gz", "wb") as f:
        make_snapshot(src, f, 10**6)
    store.put_file(tmp_path / "snap.tar.gz", "jobs/7/code.tar.gz")
    exited = run_to_end(tmp_path, receiver, [sys.executable, "train.py"], snapshot_key="jobs/7/code.tar.gz", workdir=None)
    assert exited["reason"] == "exit_zero"
    assert receiver.texts() == ["['.gitignore', 'train.py']", str(tmp_path / "run" / "code")]


def test_command_not_found(tmp_path: Path, receiver: Receiver) -> None:
    exited = run_to_end(tmp_path, receiver, ["no-such-command-xyz", "--flag"])
    assert exited["reason"] == "start_failed" and exited["exit_code"] is None
    assert "command not found: no-such-command-xyz" in exited["message"]
    assert any("command not found: no-such-command-xyz" in t for t in receiver.texts("stderr"))
    assert b"command not found" in ArtifactStore((tmp_path / "store").as_uri()).read_bytes("jobs/7/attempts/2/log.txt")
    assert not receiver.events("started")


def test_nonzero_exit_carries_the_log_tail(tmp_path: Path, receiver: Receiver) -> None:
    argv = job(tmp_path, "import sys; print('boom: CUDA out of memory', file=sys.stderr); sys.exit(3)")
    exited = run_to_end(tmp_path, receiver, argv)
    assert exited["reason"] == "exit_nonzero" and exited["exit_code"] == 3
    assert "code 3" in exited["message"] and "CUDA out of memory" in exited["message"]


def test_system_samples_and_heartbeats(tmp_path: Path, receiver: Receiver) -> None:
    go = tmp_path / "go"
    argv = job(tmp_path, f"""
        import os, time
        while not os.path.exists({str(go)!r}):
            time.sleep(0.02)
    """)
    sup = launch(tmp_path, argv, receiver.url, sample_interval=0.5, heartbeat_interval=0.1)

    def empty() -> list[dict[str, Any]]:
        return [b for b in receiver.ordered() if not (b["logs"] or b["series"] or b["system"] or b["events"])]

    wait_for(lambda: len(empty()) >= 2 and any(b["system"] for b in receiver.ordered()), timeout=15,
             what="heartbeats (empty batches) and a system sample")
    first, *later = [s for b in receiver.ordered() for s in b["system"]]
    assert first["memory_rss"] > 0 and first["cpu_percent"] is None and first["gpus"] == []  # at the start
    wait_for(lambda: len([s for b in receiver.ordered() for s in b["system"]]) >= 3, timeout=15, what="samples")
    sample = [s for b in receiver.ordered() for s in b["system"]][-1]
    assert sample["memory_rss"] > 0 and sample["cpu_percent"] >= 0 and sample["gpus"] == []
    go.touch()
    assert sup.wait() == 0


def test_a_job_shorter_than_the_sampling_interval_has_a_first_and_a_last_sample(
        tmp_path: Path, receiver: Receiver) -> None:
    argv = job(tmp_path, """
        import time
        data = bytearray(50 * 2**20)  # 50 MiB, touched: in the RSS
        end = time.time() + 1.5
        while time.time() < end:
            pass
    """)
    exited = run_to_end(tmp_path, receiver, argv, sample_interval=30)  # the job ends long before one interval
    assert exited["reason"] == "exit_zero"
    samples = [s for b in receiver.ordered() for s in b["system"]]
    assert len(samples) == 2, samples
    first, last = samples
    assert first["cpu_percent"] is None and first["memory_rss"] > 0
    assert last["cpu_percent"] > 0 and last["memory_rss"] > 50 * 2**20  # read while it ran, busy
    assert first["t"] < last["t"] <= exited["t"]  # in the final report at the latest


# -- ending a job ------------------------------------------------------------------

STUBBORN = """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    open({pids!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
    print("ready", flush=True)
    time.sleep(600)
"""


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_max_runtime_kills_the_whole_group(tmp_path: Path, receiver: Receiver) -> None:
    pids_file = tmp_path / "pids"
    argv = job(tmp_path, STUBBORN.format(pids=str(pids_file)))
    exited = run_to_end(tmp_path, receiver, argv, max_runtime=1.0, stop_grace=0.5)
    assert exited["reason"] == "max_runtime"
    assert exited["exit_code"] == 128 + signal.SIGKILL
    pids = [int(p) for p in pids_file.read_text().split()]
    wait_for(lambda: all(dead(p) for p in pids), timeout=5, what="the job and its grandchild to be gone")
    notes = receiver.texts("stderr")
    assert any("max_runtime" in t and "SIGTERM" in t for t in notes)
    assert any("SIGKILL" in t for t in notes)


def test_sigterm_to_supervisor_stops_the_job(tmp_path: Path, receiver: Receiver) -> None:
    pids_file = tmp_path / "pids"
    argv = job(tmp_path, STUBBORN.format(pids=str(pids_file)))
    sup = launch(tmp_path, argv, receiver.url, stop_grace=0.3)
    wait_for(lambda: "ready" in receiver.texts(), timeout=15, what="the job to start")
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.wait() == 0
    exited = receiver.exited()
    assert exited is not None and exited["reason"] == "stopped_by_user"
    assert all(dead(int(p)) for p in pids_file.read_text().split())


# a parent (a Ray actor's stand-in) that starts the supervisor, says its pid, and waits to be killed
HOLDER = """
import json, subprocess, sys, time
cfg = json.loads(open(sys.argv[1]).read())
cfg["parent_pid"] = __import__("os").getpid()
open(sys.argv[1], "w").write(json.dumps(cfg))
with open(sys.argv[2], "wb") as err:
    sup = subprocess.Popen([sys.executable, "-m", "modelyard.supervisor", sys.argv[1]], stderr=err,
                           start_new_session=True)
print(sup.pid, flush=True)
time.sleep(600)
"""


def test_a_supervisor_whose_parent_dies_kills_its_command_and_exits(tmp_path: Path, receiver: Receiver) -> None:
    pids_file = tmp_path / "pids"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(tmp_path, job(tmp_path, STUBBORN.format(pids=str(pids_file))), receiver.url)))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(tmp_path / "supervisor.err")],
                              stdout=subprocess.PIPE, start_new_session=True)
    _LAUNCHED.append(holder)
    assert holder.stdout is not None
    supervisor = int(holder.stdout.readline())
    wait_for(lambda: "ready" in receiver.texts(), timeout=15, what="the job to start")
    holder.kill()  # its actor, or its node, is gone
    holder.wait()
    command = [int(p) for p in pids_file.read_text().split()]
    wait_for(lambda: dead(supervisor) and all(dead(p) for p in command), timeout=15,
             what="the supervisor and its command (even one ignoring SIGTERM) to end")
    assert receiver.exited() is None  # no final report: the server ends the attempt as lost
    assert "is gone" in (tmp_path / "run" / "log.txt").read_text()  # kept: the attempt was not delivered


def test_stop_reply_stops_the_job(tmp_path: Path, receiver: Receiver) -> None:
    argv = job(tmp_path, "import time; print('working', flush=True); time.sleep(600)")
    sup = launch(tmp_path, argv, receiver.url, stop_grace=2)
    wait_for(lambda: "working" in receiver.texts(), timeout=15, what="the job to start")
    receiver.stop_reply = True  # the next heartbeat's reply carries it
    assert sup.wait() == 0
    exited = receiver.exited()
    assert exited is not None and exited["reason"] == "stopped_by_user"
    assert exited["exit_code"] == 128 + signal.SIGTERM


# -- outputs -----------------------------------------------------------------------


def test_outputs_synced_while_running_and_after_failure(tmp_path: Path, receiver: Receiver) -> None:
    argv = job(tmp_path, f"""
        import os, sys, time
        out = os.environ["MODELYARD_OUTPUT_DIR"]
        def wait(name):
            while not os.path.exists({str(tmp_path)!r} + "/" + name):
                time.sleep(0.02)
        open(out + "/a.txt", "w").write("a")
        wait("go1")
        open(out + "/b.txt", "w").write("b")
        wait("go2")
        open(out + "/last.txt", "w").write("written just before failing")
        sys.exit(1)
    """)
    sup = launch(tmp_path, argv, receiver.url, sync_interval=0.1)
    stored_a = tmp_path / "store" / "jobs/7/outputs/a.txt"
    wait_for(stored_a.exists, timeout=15, what="a periodic sync")
    first_upload = stored_a.stat().st_mtime_ns, stored_a.stat().st_ino
    (tmp_path / "go1").touch()
    wait_for((tmp_path / "store" / "jobs/7/outputs/b.txt").exists, timeout=15, what="b synced")
    assert (stored_a.stat().st_mtime_ns, stored_a.stat().st_ino) == first_upload, "unchanged a.txt was uploaded again"
    (tmp_path / "go2").touch()
    assert sup.wait() == 0
    exited = receiver.exited()
    assert exited is not None and exited["reason"] == "exit_nonzero"
    assert sup.store.read_bytes("jobs/7/outputs/last.txt") == b"written just before failing"


# -- delivery ----------------------------------------------------------------------

CHATTY = """
    import os, time
    def wait(name):
        while not os.path.exists({tmp!r} + "/" + name):
            time.sleep(0.01)
    for i in range(0, 500):
        print(f"line {{i}}")
    wait("go1")
    for i in range(500, 12000):
        print(f"line {{i}}")
    wait("go2")
    print('{{"metric": "done", "value": 1}}')
"""


def expected_lines() -> list[str]:
    return [f"line {i}" for i in range(12000)]


def test_receiver_started_late_gets_everything_once(tmp_path: Path) -> None:
    port = free_port()
    argv = job(tmp_path, CHATTY.format(tmp=str(tmp_path)))
    sup = launch(tmp_path, argv, f"http://127.0.0.1:{port}")
    spool = tmp_path / "run" / "spool"
    (tmp_path / "go1").touch()
    # Only the batch in flight and full ones (5,000 lines) are cut while sending is stuck.
    wait_for(lambda: len(list(spool.glob("*.json"))) >= 2, timeout=15, what="batches spooled while the server is away")
    receiver = Receiver(port).start()
    try:
        (tmp_path / "go2").touch()
        assert sup.wait() == 0, sup.stderr
    finally:
        receiver.stop()
    assert receiver.texts() == expected_lines()
    assert [m[0] for m in receiver.metrics()] == ["done"]
    assert receiver.exited() is not None
    assert list(spool.glob("*.json")) == []


def test_server_restart_on_a_new_port_found_via_server_file(tmp_path: Path) -> None:
    first = Receiver(fail_after_store=2).start()  # also forces two resends of stored batches
    server_file = tmp_path / "server.json"
    server_file.write_text(json.dumps({"url": first.url}))
    argv = job(tmp_path, CHATTY.format(tmp=str(tmp_path)))
    sup = launch(tmp_path, argv, first.url, server_file=str(server_file))
    wait_for(lambda: len(first.texts()) == 500, timeout=15, what="the first lines")
    first.stop()
    (tmp_path / "go1").touch()
    spool = tmp_path / "run" / "spool"
    wait_for(lambda: len(list(spool.glob("*.json"))) >= 2, timeout=15, what="batches spooled")
    second = Receiver().start()
    # The restarted server continues the same store: it already holds the first batches.
    second.batches = dict(first.batches)
    server_file.write_text(json.dumps({"url": second.url}))
    try:
        (tmp_path / "go2").touch()
        assert sup.wait() == 0, sup.stderr
    finally:
        second.stop()
    assert second.texts() == expected_lines()
    assert second.exited() is not None
    assert first.posts + second.posts > len(second.batches), "the flaky replies caused resends"


# -- local mode --------------------------------------------------------------------


def test_local_mode_echoes_and_returns_the_exit_code(tmp_path: Path) -> None:
    argv = job(tmp_path, """
        import sys
        print("hello")
        print('{"metric": "loss", "value": 0.1}')
        print("oops", file=sys.stderr)
        sys.exit(4)
    """)
    sup = launch(tmp_path, argv, None, storage_url=None)
    assert sup.wait() == 4
    assert (tmp_path / "supervisor.out").read_text() == 'hello\n{"metric": "loss", "value": 0.1}\n'
    assert "oops" in sup.stderr


def test_run_local_uses_the_platform_layout(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / ".gitignore").write_text("data/\n")
    (src / "data").mkdir()
    (src / "data" / "big.bin").write_bytes(b"0" * 100)
    (src / "train.py").write_text(textwrap.dedent("""
        import json, os
        print(json.dumps({k: os.environ.get(k) for k in
              ["MODELYARD_JOB_ID", "MODELYARD_OUTPUT_DIR", "MODELYARD_RESUME_DIR", "CUDA_VISIBLE_DEVICES"]}))
        print(json.dumps(sorted(os.listdir("."))))
        print(os.getcwd())
    """))
    outcome = run_local([sys.executable, "train.py"], workdir=src, run_dir=tmp_path / "run",
                        gpus=[0], resume_dir=tmp_path, stop_grace=1)
    assert outcome.shell_exit_code == 0 and outcome.reason.value == "exit_zero"
    lines = capfd.readouterr().out.splitlines()
    run = tmp_path / "run"
    assert json.loads(lines[0]) == {"MODELYARD_JOB_ID": "local", "MODELYARD_OUTPUT_DIR": str(run / "output"),
                                    "MODELYARD_RESUME_DIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": "0"}
    assert json.loads(lines[1]) == [".gitignore", "train.py"]
    assert lines[2] == str(run / "code")


def test_run_local_command_not_found(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    outcome = run_local(["definitely-not-a-command"], workdir=tmp_path / "src", run_dir=tmp_path / "run")
    assert outcome.shell_exit_code == 127 and outcome.reason.value == "start_failed"
    assert "command not found: definitely-not-a-command" in capfd.readouterr().err


# -- config ------------------------------------------------------------------------


def test_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"job_id": "1"}')
    proc = subprocess.run([sys.executable, "-m", "modelyard.supervisor", str(tmp_path / "config.json")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "bad supervisor config" in proc.stderr and "Traceback" not in proc.stderr


def test_job_env_drops_stale_inherited_variables(tmp_path: Path) -> None:
    from modelyard.supervisor import SupervisorConfig, job_env

    cfg = SupervisorConfig.from_dict(config(tmp_path, ["true"], None, gpus=[2], max_runtime=0))
    env = job_env(cfg, base={"PATH": "/bin", "MODELYARD_RESUME_DIR": "/stale", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert "MODELYARD_RESUME_DIR" not in env
    assert env["CUDA_VISIBLE_DEVICES"] == "2" and env["PATH"] == "/bin" and env["EXTRA"] == "yes"
    assert cfg.max_runtime is None  # 0 means no limit
