"""A short run of the benchmark suite (`python -m bench --quick --no-peers`), so it cannot rot.

Benchmarks are not timed tests: this checks only that every scenario runs and
that the JSON document keeps its shape. The peers (MLflow, Ray) are not
installed here; `make bench` does that.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROWS = {"submit_to_running", "submit_to_running_venv", "throughput_50_jobs", "ingest_sqlite", "ingest_postgresql", "read_100k_series",
        "read_1m_downsampled", "server_start", "log_to_stream", "scheduling_pass", "schedule_nodes", "digits_demo",
        "rss_server_idle", "rss_server_50_running", "rss_supervisor", "submit_to_first_line_image",
        "training_image", "ray_submit_to_running", "ray_two_node_start"}


def test_quick_bench_runs_every_scenario_and_prints_its_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--no-peers", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
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
