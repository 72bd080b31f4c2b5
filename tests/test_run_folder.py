"""A run folder is removed once its attempt's log and outputs are in the artifact store and the
final report was delivered; it is kept, and the log says why, when an upload failed."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_supervisor import Receiver, job, kill_leftovers, launch  # noqa: F401  (kill_leftovers: the autouse fixture)

from modelyard.artifacts import ArtifactStore

WRITES = """
    import os
    open(os.path.join(os.environ["MODELYARD_OUTPUT_DIR"], "model.pt"), "w").write("weights")
    print("trained", flush=True)
"""



@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def test_the_run_folder_is_gone_after_a_job_whose_outputs_and_log_are_stored(tmp_path: Path, receiver: Receiver) -> None:
    sup = launch(tmp_path, job(tmp_path, WRITES), receiver.url)
    assert sup.wait() == 0, sup.stderr
    store = ArtifactStore((tmp_path / "store").as_uri())
    assert store.read_bytes("jobs/7/outputs/model.pt") == b"weights"
    assert b"trained" in store.read_bytes("jobs/7/attempts/2/log.txt")
    assert not sup.run_dir.exists()


def test_the_run_folder_is_kept_when_an_upload_failed_and_the_log_says_so(tmp_path: Path, receiver: Receiver) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "jobs").write_text("a file where the job's folder would go: every upload fails")
    sup = launch(tmp_path, job(tmp_path, WRITES), receiver.url)
    assert sup.wait() == 0, sup.stderr
    assert receiver.exited() is not None and receiver.exited()["reason"] == "exit_zero"
    assert (sup.run_dir / "output" / "model.pt").read_text() == "weights"
    assert (sup.run_dir / "log.txt").exists()
    notes = receiver.texts("stderr")
    assert any(f"the run folder {sup.run_dir} is kept: its outputs are not all in the artifact store" in t
               for t in notes), notes


def test_run_local_keeps_its_run_folder(tmp_path: Path) -> None:
    from modelyard.supervisor import run_local

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(WRITES.replace("\n    ", "\n"))
    outcome = run_local(["python3", "train.py"], workdir=src, run_dir=tmp_path / "run")
    assert outcome.shell_exit_code == 0
    assert (tmp_path / "run" / "output" / "model.pt").read_text() == "weights"
