"""The digits-cnn example job: trains to >= 95% on CPU, follows the metric and checkpoint contract, resumes."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modelyard.jobs import MetricPoint, parse_metric_line

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-cnn"


def train(tmp_path: Path, *args: str, **env: str) -> tuple[list[MetricPoint], list[str]]:
    """Run train.py as the platform would (own cwd, CPU job); its metric points and other lines."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    full_env.update(CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1", **env)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE / "train.py"), *args], cwd=tmp_path, env=full_env,
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    points, logs = [], []
    for line in proc.stdout.splitlines():
        point = parse_metric_line(line, now=time.time())
        (points if point else logs).append(point or line)
    return points, logs


def series(points: list[MetricPoint], name: str) -> list[MetricPoint]:
    return [p for p in points if p.name == name]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[MetricPoint]]:
    work = tmp_path_factory.mktemp("digits")
    points, _ = train(work, "--epochs", "5", MODELYARD_OUTPUT_DIR=str(work / "out"))
    return work / "out", points


def test_reaches_95_percent_validation_accuracy(first_run: tuple[Path, list[MetricPoint]]) -> None:
    _, points = first_run
    val = series(points, "val_accuracy")
    assert [p.epoch for p in val] == [1, 2, 3, 4, 5]
    assert val[-1].value >= 0.95, [round(p.value, 4) for p in val]


def test_reports_every_metric_on_its_axis(first_run: tuple[Path, list[MetricPoint]]) -> None:
    _, points = first_run
    assert {p.name for p in points} == {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"}
    loss_steps = [p.step for p in series(points, "loss")]
    assert loss_steps == sorted(loss_steps) and len(loss_steps) > 20 and None not in loss_steps
    for name in ("accuracy", "val_loss", "val_accuracy", "learning_rate"):
        assert [p.epoch for p in series(points, name)] == [1, 2, 3, 4, 5]


def test_writes_a_whole_checkpoint_each_epoch(first_run: tuple[Path, list[MetricPoint]]) -> None:
    out, _ = first_run
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"checkpoint-epoch{e:03d}.pt" for e in range(1, 6)] + ["latest.pt", "model.pt"]
    latest = torch.load(out / "latest.pt", weights_only=True)
    assert latest["epoch"] == 5 and {"model", "optimizer", "scheduler", "step"} <= latest.keys()


def test_resumes_from_the_last_epoch_with_its_schedule(
    first_run: tuple[Path, list[MetricPoint]], tmp_path: Path,
) -> None:
    previous, points = first_run
    last_step = series(points, "val_accuracy")[-1].step
    data = tmp_path / "data"  # a dataset given through MODELYARD_DATA_DIR replaces the bundled one
    data.mkdir()
    rng = np.random.default_rng(0)
    np.savez(data / "train.npz", x=rng.integers(0, 17, (200, 8, 8)), y=np.arange(200) % 10)
    np.savez(data / "val.npz", x=rng.integers(0, 17, (20, 8, 8)), y=np.arange(20) % 10)

    resumed, logs = train(tmp_path, "--epochs", "6", MODELYARD_OUTPUT_DIR=str(tmp_path / "out"),
                          MODELYARD_RESUME_DIR=str(previous), MODELYARD_DATA_DIR=str(data))

    assert any("200 train / 20 val" in line for line in logs), logs
    assert [p.epoch for p in series(resumed, "val_accuracy")] == [6]
    assert series(resumed, "val_accuracy")[0].step == last_step + 7  # 200 images in batches of 32
    lr = series(points, "learning_rate")
    assert series(resumed, "learning_rate")[0].value == pytest.approx(lr[-1].value * (lr[1].value / lr[0].value))
    assert (tmp_path / "out" / "checkpoint-epoch006.pt").is_file()
    assert torch.load(tmp_path / "out" / "latest.pt", weights_only=True)["epoch"] == 6


def test_the_job_does_not_depend_on_modelyard() -> None:
    source = (EXAMPLE / "train.py").read_text()
    assert "import modelyard" not in source and "from modelyard" not in source
