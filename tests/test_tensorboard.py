"""TensorBoard event files become metric points (README "TensorBoard"): a real SummaryWriter in a
real job under a real supervisor, a file read in two parts, and a watcher that costs nothing idle."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
from conftest import wait_for
from test_supervisor import Receiver, job, launch, receiver  # noqa: F401 (fixture)

from modelyard.supervisor.tensorboard import EventWatcher, Point


def test_summary_writer_scalars_become_the_jobs_series(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    go = tmp_path / "go"
    argv = job(tmp_path, f"""
        import json, os, time
        from torch.utils.tensorboard import SummaryWriter
        out = os.environ["MODELYARD_OUTPUT_DIR"]
        writer = SummaryWriter(os.environ["MODELYARD_TENSORBOARD_DIR"])
        times = []
        for step in range(50):
            before = time.time()
            writer.add_scalar("train/loss", 1.0 / (step + 1), step)  # simple_value
            writer.add_scalar("train/acc", step / 50, step, new_style=True)  # a scalar tensor
            writer.flush()
            times.append((before, time.time()))
            if step == 24:  # half written: the supervisor must read them while the job runs
                while not os.path.exists({str(go)!r}):
                    time.sleep(0.02)
        writer.close()
        # a second writer anywhere under the output folder is read too
        other = SummaryWriter(os.path.join(out, "runs", "eval"))
        other.add_scalar("eval/loss", 0.25, 49)
        other.close()
        json.dump(times, open(os.path.join(out, "times.json"), "w"))
    """)
    sup = launch(tmp_path, argv, receiver.url)
    wait_for(lambda: len([m for m in receiver.metrics() if m[0] == "train/loss"]) == 25, timeout=30,
             what="the first 25 steps, read while the job runs")
    assert sup.proc.poll() is None
    go.touch()
    assert sup.wait(30) == 0, sup.stderr
    assert receiver.exited()["reason"] == "exit_zero"
    metrics = receiver.metrics()
    loss = [m for m in metrics if m[0] == "train/loss"]
    acc = [m for m in metrics if m[0] == "train/acc"]
    # stored as float32 in the event, as TensorBoard itself shows them
    assert [m[1:3] for m in loss] == [[float(np.float32(1.0 / (s + 1))), s] for s in range(50)]
    assert [m[1:3] for m in acc] == [[float(np.float32(s / 50)), s] for s in range(50)]
    assert [m[:3] for m in metrics if m[0] == "eval/loss"] == [["eval/loss", 0.25, 49]]
    times = json.loads(sup.store.read_bytes("jobs/7/outputs/times.json"))
    for (before, after), point in zip(times, loss):
        assert before - 0.01 <= point[4] <= after + 0.01  # the writer's wall time, not when it was read
    assert all(m[3] is None for m in metrics)  # no epoch axis in an event


def _event_file(tmp_path: Path, n: int) -> bytes:
    """The bytes of an event file with ``n`` scalars, written by tensorboard's own writer."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    folder = tmp_path / "written"
    writer = EventFileWriter(str(folder))
    for step in range(n):
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=float(step))])
        writer.add_event(event_pb2.Event(wall_time=1000.0 + step, step=step, summary=summary))
    writer.close()
    (path,) = folder.iterdir()
    return path.read_bytes()


def test_a_truncated_record_is_waited_for_and_each_point_read_once(tmp_path: Path) -> None:
    data = _event_file(tmp_path, 10)
    out = tmp_path / "output" / "tensorboard"
    out.mkdir(parents=True)
    path = out / "events.out.tfevents.1.host.1.0"
    got: list[Point] = []
    # cut inside the last record's header, its data, its last crc: each is a record not yet finished
    last = len(_event_file(tmp_path / "nine", 9))
    for cut in (last + 3, last + 14, len(data) - 1):
        got.clear()
        watcher = EventWatcher(tmp_path / "output", got.extend, interval=60)
        path.write_bytes(data[:cut])
        assert watcher.poll() == 9
        assert watcher.poll() == 0  # nothing new: the partial record stays pending, not an error
        with open(path, "ab") as f:
            f.write(data[cut:])
        assert watcher.poll() == 1
        assert watcher.poll() == 0
        assert got == [("loss", float(s), s, None, 1000.0 + s) for s in range(10)]


def test_no_event_file_no_cost(tmp_path: Path) -> None:
    """With no event file the watcher sleeps between looks and never imports tensorboard."""
    (tmp_path / "output" / "tensorboard").mkdir(parents=True)
    script = textwrap.dedent(f"""
        import sys, time, psutil
        from modelyard.supervisor.tensorboard import EventWatcher
        w = EventWatcher({str(tmp_path / "output")!r}, lambda points: None, interval=0.1)
        cpu = psutil.Process().cpu_times()
        start = time.monotonic()
        w.start()
        while w.looks < 5:
            time.sleep(0.05)
        w.stop()
        after = psutil.Process().cpu_times()
        print(w.looks, time.monotonic() - start, after.user + after.system - cpu.user - cpu.system,
              "tensorboard" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True)
    looks, elapsed, cpu, imported = out.stdout.split()
    assert imported == "False"
    # five looks took five intervals: the thread waits between them, it does not spin
    assert float(elapsed) >= 0.45 and int(looks) <= float(elapsed) / 0.1 + 2
    assert float(cpu) < 0.2


def test_only_node_rank_0_reads_event_files(tmp_path: Path, receiver: Receiver) -> None:  # noqa: F811
    """As with metric lines: every node writes the same curves; the job's series are rank 0's."""
    argv = job(tmp_path, """
        import os
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
        writer = EventFileWriter(os.environ["MODELYARD_TENSORBOARD_DIR"])
        value = summary_pb2.Summary.Value(tag="loss", simple_value=1.0)
        writer.add_event(event_pb2.Event(wall_time=1.0, step=1, summary=summary_pb2.Summary(value=[value])))
        writer.close()
        print('{"metric": "loss", "value": 1}')
    """)
    sup = launch(tmp_path, argv, receiver.url, output_prefix="jobs/7/outputs/rank1",
                 distributed={"node_rank": 1, "nnodes": 2, "master_addr": "127.0.0.1", "master_port": 29999})
    assert sup.wait(30) == 0, sup.stderr
    assert receiver.exited()["reason"] == "exit_zero"
    assert receiver.metrics() == []
    assert receiver.texts() == ['{"metric": "loss", "value": 1}']  # a log line on rank 1
