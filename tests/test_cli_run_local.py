"""``modelyard run --local``: the command runs in the foreground from a snapshot, with the job variables."""
from __future__ import annotations

from pathlib import Path

from serverproc import cli, clean_env


def test_run_local_runs_the_snapshot_and_exits_with_the_code(tmp_path: Path) -> None:
    wd = tmp_path / "code"
    wd.mkdir()
    (wd / "data.txt").write_text("snapshot data\n")
    script = 'cat data.txt; echo "A=$A out=${MODELYARD_OUTPUT_DIR:+set} gpus=[$CUDA_VISIBLE_DEVICES]"; exit 4'
    done = cli(["run", "--local", "--env", "A=1", "--", script], clean_env(tmp_path / "home"), cwd=wd)
    assert done.returncode == 4, done.stderr
    assert "snapshot data" in done.stdout
    assert "A=1 out=set gpus=[]" in done.stdout
    assert "outputs in" in done.stderr
