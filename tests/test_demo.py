"""`make demo`'s driver end to end: dataset import, submit with the dataset, follow, metrics."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_registers_the_digits_dataset_and_trains_from_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env["MODELYARD_HOME"] = str(home)
    try:
        done = subprocess.run([sys.executable, "examples/digits-cnn/demo.py", "--epochs", "3"], cwd=REPO, env=env,
                              text=True, capture_output=True, timeout=300)
        out = done.stdout + done.stderr
        assert done.returncode == 0, out[-4000:]
        assert "created digits:" in out and "train 1438" in out and "val 359" in out
        assert "MODELYARD_DATA_DIR=" in out  # trained from the dataset, not from sklearn directly
        assert "job 1 ended: succeeded" in out
        assert "val_accuracy" in out and "web UI: http://127.0.0.1:" in out
    finally:
        server = home / "server.json"
        if server.exists():
            os.kill(json.loads(server.read_text())["pid"], signal.SIGTERM)
