"""Metrics from the text scripts already print (``metric_patterns``, jobs/patterns.py): each preset on
real output lines, a user's regex, refusals at submit, and a real job end to end. One server for the module.

Lightning's lines come from a tiny real run here (tests/data/patterns/lightning_tiny.py). Keras/TensorFlow
are too heavy to install here: its lines are recorded (Keras 2's and Keras 3's ``model.fit`` output), as are
HF Trainer's log dicts (``Trainer.log`` prints ``{'loss': ...}`` as a Python dict). pytorch/examples' lines are
made with the example's own format string (mnist/main.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from serverproc import ServerProc, cli, start_server

from conftest import wait_for
from modelyard.jobs.launch import LaunchSpec
from modelyard.jobs.patterns import MAX_PATTERN, MAX_PATTERNS, matcher
from modelyard.jobs.spec import STORED, JobSpec

PY = sys.executable
HERE = Path(__file__).parent
# pytorch/examples mnist/main.py's train() and test() print lines
PT_TRAIN = "Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}"
PT_TEST = "\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n"


def read(patterns: list[str], lines: list[str]) -> list[tuple[str, float, int | None, int | None]]:
    m = matcher(patterns)
    assert m is not None
    return [f for line in lines for f in m.match(line)]


def test_keras_lines_with_the_epoch_from_the_line_before() -> None:
    lines = [
        "Epoch 1/2",
        "1875/1875 [==============================] - 5s 3ms/step - loss: 0.2931 - accuracy: 0.9152",
        "Epoch 2/2",
        # Keras 3: a bar of its own, and validation metrics
        "469/469 ━━━━━━━━━━━━━━━━━━━━ 3s 6ms/step - accuracy: 0.8723 - loss: 0.4505 - val_accuracy: 0.9603 - "
        "val_loss: 0.1370",
        # redrawn with \r in one line: the last drawing counts
        "\r 1/10 [==>....] - ETA: 0s - loss: 0.9000\r10/10 [==========] - 0s 2ms/step - loss: 0.1000",
    ]
    assert read(["keras"], lines) == [
        ("loss", 0.2931, None, 1), ("accuracy", 0.9152, None, 1),
        ("accuracy", 0.8723, None, 2), ("loss", 0.4505, None, 2), ("val_accuracy", 0.9603, None, 2),
        ("val_loss", 0.137, None, 2),
        ("loss", 0.1, None, 2),
    ]


def test_hf_trainer_log_dicts() -> None:
    lines = [
        "{'loss': 0.6931, 'grad_norm': 1.25, 'learning_rate': 5e-05, 'epoch': 1.0}",
        "{'eval_loss': 0.5, 'eval_runtime': 0.1, 'epoch': 0.5}",  # a fraction is no epoch axis
        " 33%|███▎      | 1/3 [00:01<00:02,  1.00s/it]{'loss': 0.5, 'note': 'x', 'flag': True}",
        "{'loss': nan}", "{broken", "not a dict {'a': 1",
    ]
    assert read(["hf-trainer"], lines) == [
        ("loss", 0.6931, None, 1), ("grad_norm", 1.25, None, 1), ("learning_rate", 5e-05, None, 1),
        ("eval_loss", 0.5, None, None), ("eval_runtime", 0.1, None, None),
        ("loss", 0.5, None, None),
    ]


def test_pytorch_examples_lines_get_steps_of_samples_seen() -> None:
    lines = [PT_TRAIN.format(1, 0, 60000, 0.0, 2.3), PT_TRAIN.format(1, 640, 60000, 1.0, 0.2931),
             *PT_TEST.format(0.1, 9850, 10000, 98.5).split("\n"), PT_TRAIN.format(2, 640, 60000, 1.0, 0.1)]
    assert read(["pytorch-examples"], lines) == [
        ("loss", 2.3, 0, 1), ("loss", 0.2931, 640, 1),
        ("test_loss", 0.1, 640, 1), ("test_accuracy", 98.0, 640, 1),  # "(98%)": the example rounds it
        ("loss", 0.1, 60640, 2),
    ]


@pytest.mark.parametrize("bar", ["tqdm", "rich"])
def test_lightning_preset_on_a_real_run(bar: str, tmp_path: Path) -> None:
    done = subprocess.run([PY, str(HERE / "data" / "patterns" / "lightning_tiny.py"), bar], capture_output=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()
    # as the pump splits output: at newlines only, a \r stays inside the line
    text = (done.stdout + done.stderr).decode("utf-8", "backslashreplace")
    points = read(["lightning"], text.split("\n"))
    assert points and {p[0] for p in points} == {"train_loss"}  # v_num is no metric
    steps = [p[2] for p in points]
    # 2 epochs of 4 batches: tqdm draws every batch; rich, in a file, only its last state
    assert steps == ([1, 2, 3, 4, 5, 6, 7, 8] if bar == "tqdm" else [8])
    assert points[-1][3] == 1 and all(0 < p[1] < 100 for p in points)


def test_a_users_regex_named_groups_pairs_and_axes() -> None:
    lines = ["step 10 loss=0.5 acc=0.9", "step 11 loss=abc acc=0.8", "iter 12: lr 0.1 wd 0.2", "nothing here"]
    assert read([r"step (?P<step>\d+)", r"(?P<name>loss|acc)=(?P<value>\S+)"], lines) == [
        ("loss", 0.5, 10, None), ("acc", 0.9, 10, None), ("acc", 0.8, 11, None)]  # "abc" is no number
    assert read([r"iter (?P<step>\d+): lr (?P<lr>[\d.]+) wd (?P<wd>[\d.]+)"], lines) == [
        ("lr", 0.1, 12, None), ("wd", 0.2, 12, None)]
    assert matcher([]) is None  # no pattern: the pump does nothing more


@pytest.mark.parametrize(("patterns", "words"), [
    (["loss=(?P<loss>[0-9.]+"], "is not a regex"),
    (["loss=([0-9.]+)"], "has no named group"),
    (["kerass"], "has no named group"),  # an unknown preset: not a regex with named groups either
    (["(?P<name>\\w+)"], "name and value go together"),
    ([f"(?P<x>{'a' * MAX_PATTERN})"], "the limit is"),
    ([f"(?P<m{i}>x)" for i in range(MAX_PATTERNS + 1)], "the limit is"),
    ([3], "valid string"),
])
def test_bad_patterns_are_refused_naming_the_field(patterns: list[object], words: str) -> None:
    with pytest.raises(ValidationError) as e:
        JobSpec(command=["true"], metric_patterns=patterns)
    err = e.value.errors()[0]
    assert err["loc"][0] == "metric_patterns" and words in err["msg"]


def test_stored_specs_and_older_launch_configs_still_load(tmp_path: Path) -> None:
    many = [f"(?P<m{i}>x)" for i in range(MAX_PATTERNS + 1)]
    stored = JobSpec.model_validate({"command": ["true"], "metric_patterns": many}, context=STORED)
    assert stored.metric_patterns == many  # kept before a bound was lowered: still loads
    old = {"version": 1, "job_id": "1", "argv": ["true"], "run_dir": str(tmp_path)}  # written before the field
    assert LaunchSpec.model_validate(old).metric_patterns == []
    spec = JobSpec.from_sources({"command": ["true"], "metric_patterns": ["keras"]}, {"metric_patterns": ["lightning"]})
    assert spec.metric_patterns == ["keras", "lightning"]


def test_throughput_with_one_pattern_is_measured() -> None:
    m = matcher(["pytorch-examples"])
    assert m is not None
    lines = [PT_TRAIN.format(1, i * 64, 60000, 0.0, 0.5) if i % 10 == 0 else f"log line {i}" for i in range(20000)]
    assert sum(len(m.match(line)) for line in lines) == 2000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProc]:
    with start_server(tmp_path_factory.mktemp("patterns") / "home") as proc:
        yield proc


# a job printing as pytorch/examples' MNIST does: 2 epochs of 3 logged batches, then a JSON metric line
JOB = (f"T = {PT_TRAIN!r}\n"
       "for e in (1, 2):\n"
       "    for b in range(3):\n"
       "        print(T.format(e, b * 640, 1920, 100.0 * b / 3, 1.0 / (e * 10 + b)), flush=True)\n"
       "print('{\"metric\": \"acc\", \"value\": 0.9, \"step\": 2}')\n")


def test_a_real_job_gets_its_loss_series_from_printed_lines(server: ServerProc, tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(JOB)
    done = cli(["submit", "--json", "--metric-pattern", "pytorch-examples", "--", PY, "train.py"], server.env,
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["metric_patterns"] == ["pytorch-examples"]
    assert cli(["wait", str(job["id"]), "--timeout", "60s"], server.env).returncode == 0
    with server.client() as c:
        metrics = wait_for(lambda: (m := c.metrics(job["id"])) and "loss" in m and m, timeout=30,
                           what="the job's metrics")
        assert [(p["step"], p["epoch"], p["value"]) for p in metrics["loss"]] == [
            (s + 1920 * (e - 1), e, pytest.approx(1.0 / (e * 10 + b), abs=1e-6))
            for e in (1, 2) for b, s in enumerate((0, 640, 1280))]
        assert [p["value"] for p in metrics["acc"]] == [0.9]  # a JSON metric line is still one
    logs = cli(["logs", str(job["id"])], server.env).stdout
    assert "Train Epoch: 2 [1280/1920 (67%)]" in logs  # a matched line stays in the log


def test_a_bad_regex_is_refused_at_submit(server: ServerProc, tmp_path: Path) -> None:
    with server.client() as c:
        r = c._http.post("/jobs", json={"spec": {"command": ["true"], "metric_patterns": ["loss=(?P<loss>[0-9.]+"]}})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "spec.metric_patterns" and "is not a regex" in err["message"], err
    done = cli(["submit", "--metric-pattern", "loss=([0-9.]+)", "--", "true"], server.env, cwd=tmp_path)
    assert done.returncode != 0 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "metric_patterns" in done.stderr and "no named group" in done.stderr


@pytest.mark.parametrize("rank0", [True, False])
def test_the_pump_reads_both_streams_on_rank_0_only(rank0: bool, tmp_path: Path) -> None:
    from modelyard.supervisor.batch import Batcher
    from modelyard.supervisor.output import OutputPump

    code = ("import sys; print('loss=0.5 step=1'); print('plain'); print('loss=0.25 step=2', file=sys.stderr);"
            "print('{\"metric\": \"acc\", \"value\": 1}')")
    batcher = Batcher(tmp_path / "spool", max_items=1000, interval=3600)
    pump = OutputPump(tmp_path / "log.txt", batcher, patterns=[r"loss=(?P<loss>[\d.]+) step=(?P<step>\d+)"],
                      metrics=rank0)
    proc = subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pump.start(proc.stdout, proc.stderr)  # type: ignore[arg-type]
    assert proc.wait(timeout=30) == 0 and pump.join(timeout=30)
    pump.close()
    points = sorted((name, value, step) for name, value, step, _, _ in batcher.metrics)
    assert points == ([("acc", 1.0, None), ("loss", 0.25, 2), ("loss", 0.5, 1)] if rank0 else [])
    logs = sorted(text for _, _, text in batcher.logs)
    json_line = [] if rank0 else ['{"metric": "acc", "value": 1}']  # off rank 0, a metric line is a log line
    assert logs == sorted(["loss=0.5 step=1", "plain", "loss=0.25 step=2", *json_line])
    assert (tmp_path / "log.txt").read_text().count("loss=") == 2  # every line stays in the log


def test_run_local_takes_patterns_and_refuses_a_bad_one(tmp_path: Path) -> None:
    from serverproc import clean_env

    wd = tmp_path / "code"
    wd.mkdir()
    env = clean_env(tmp_path / "home")
    done = cli(["run", "--local", "--metric-pattern", "keras", "--", PY, "-c", "print('- loss: 0.5')"], env, cwd=wd)
    assert done.returncode == 0 and "- loss: 0.5" in done.stdout, done.stderr
    done = cli(["run", "--local", "--metric-pattern", "(?P<x", "--", "true"], env, cwd=wd)
    assert done.returncode != 0 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "metric_patterns" in done.stderr and "is not a regex" in done.stderr
