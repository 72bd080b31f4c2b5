"""A short run of the benchmark suite (`python -m bench --quick --no-peers`), so it cannot rot.

Benchmarks are not timed tests: this checks only that every scenario runs and
that the JSON document keeps its shape. The peers (MLflow, Ray, FastTrackML) are
not installed here; `make bench` does that.
"""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from bench.__main__ import NAMES

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"submit_to_running", "submit_to_running_venv", "throughput_50_jobs", "ingest_sqlite", "ingest_postgresql", "read_100k_series",
        "read_1m_downsampled", "server_start", "log_to_stream", "scheduling_pass", "schedule_nodes", "digits_demo",
        "rss_server_idle", "rss_server_50_running", "rss_supervisor", "submit_to_first_line_image",
        "training_image", "ray_submit_to_running", "ray_two_node_start"}


MLFLOW_ROWS = {"mlflow_client_log_batch", "mlflow_client_log_metric", "mlflow_client_read"}


def quick_bench(out: Path, only: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "--quick", "--no-peers", "--only", ",".join(only),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_quick_bench_runs_every_scenario_and_prints_its_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    # mlflow_client has a test of its own below
    proc = quick_bench(out, [n for n in NAMES if n != "mlflow_client"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    assert json.loads(proc.stdout) == doc
    assert doc["options"] == {"quick": True, "peers": False, "repeat": 1, "only": doc["options"]["only"]}
    assert {"cpu", "cores", "memory_gb", "python", "load"} <= doc["machine"].keys()
    rows = {r["name"]: r for r in doc["scenarios"]}
    assert set(rows) == ROWS, [r.get("error") for r in doc["scenarios"] if "error" in r]
    for name, r in rows.items():
        assert {"unit", "target", "higher_is_better", "modelyard", "peers", "met", "notes"} <= r.keys(), name
        assert r["peers"] == []
        if name != "digits_demo":  # skipped in --quick: it trains for minutes
            stats = r["modelyard"]
            assert 0 < stats["min"] <= stats["median"] <= stats["max"], name
            assert isinstance(r["met"], bool), name


def test_quick_mlflow_client_logs_to_modelyard_and_reads_every_point_back(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = quick_bench(out, ["mlflow_client"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(out.read_text())
    rows = {r["name"]: r for r in doc["scenarios"]}
    assert set(rows) == MLFLOW_ROWS, [r.get("error") for r in doc["scenarios"] if "error" in r]
    # the agent raises, failing the row, when a point read back differs from the one logged
    assert f"mlflow {version('mlflow-skinny')}" in rows["mlflow_client_read"]["notes"]
    for r in rows.values():
        assert r["peers"] == [] and r["met"] is True, r["name"]
        assert 0 < r["modelyard"]["min"] <= r["modelyard"]["max"], r["name"]
    log_s = rows["mlflow_client_log_batch"]["log_s"]["modelyard"]["median"]
    assert abs(rows["mlflow_client_log_batch"]["modelyard"]["median"] * log_s - doc["sizes"]["mlflow_client_points"]) < 1
