"""artifacts/outputs.py: which attempt's outputs are the job's, what a new attempt resumes from, its model."""
from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.artifacts.keys import attempt_output_prefix, log_key, output_prefix, split_attempt_output
from modelyard.artifacts.outputs import job_outputs, resume_prefix
from modelyard.artifacts.store import ArtifactStore


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(f"file://{tmp_path / 'store'}")


def put(store: ArtifactStore, job: int, attempt: int, *paths: str) -> None:
    for path in paths:
        store.put_bytes(f"{attempt}:{path}".encode(), f"{attempt_output_prefix(job, attempt)}/{path}")


def paths(outputs) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.path for e in outputs.files]


def test_the_jobs_outputs_are_its_latest_attempts_that_has_any(store: ArtifactStore) -> None:
    put(store, 7, 1, "ckpt-1.pt", "final/model.pt")
    put(store, 7, 2, "ckpt-2.pt")
    store.put_bytes(b"log", log_key(7, 3))  # attempt 3 failed before writing anything: only its log
    out = job_outputs(store, 7)
    assert (out.attempt, paths(out), out.with_outputs, out.with_model) == (2, ["ckpt-2.pt"], [1, 2], [1])
    assert out.key("ckpt-2.pt") == "jobs/7/attempts/2/outputs/ckpt-2.pt"
    assert paths(job_outputs(store, 7, attempt=1)) == ["ckpt-1.pt", "final/model.pt"]
    assert job_outputs(store, 7, attempt=3).files == []  # named, so its own (none), never another's


def test_the_model_is_the_latest_final_folder(store: ArtifactStore) -> None:
    put(store, 7, 1, "ckpt.pt", "final/model.pt", "final/vocab/words.txt")
    put(store, 7, 2, "ckpt.pt")
    model = job_outputs(store, 7, final=True)
    assert (model.attempt, paths(model)) == (1, ["final/model.pt", "final/vocab/words.txt"])
    assert job_outputs(store, 7, attempt=2, final=True).files == []
    assert job_outputs(store, 8, final=True).prefix is None


def test_a_new_attempt_resumes_from_the_latest_earlier_one_with_outputs(store: ArtifactStore) -> None:
    assert resume_prefix(store, 7, before=2) is None  # nothing to resume from
    put(store, 7, 1, "ckpt.pt")
    put(store, 7, 3, "ckpt.pt")
    assert resume_prefix(store, 7, before=2) == "jobs/7/attempts/1/outputs"
    assert resume_prefix(store, 7, before=3) == "jobs/7/attempts/1/outputs"  # attempt 2 left nothing
    assert resume_prefix(store, 7, before=4) == "jobs/7/attempts/3/outputs"
    assert resume_prefix(store, 7) == "jobs/7/attempts/3/outputs"  # a clone's: the latest


def test_a_job_from_before_per_attempt_outputs_reads_its_one_folder(store: ArtifactStore) -> None:
    store.put_bytes(b"w", f"{output_prefix(5)}/model.bin")
    out = job_outputs(store, 5)
    assert (out.attempt, out.prefix, paths(out)) == (None, "jobs/5/outputs", ["model.bin"])
    assert resume_prefix(store, 5, before=3) == "jobs/5/outputs"  # its restart goes on from there
    put(store, 5, 3, "new.bin")
    assert job_outputs(store, 5).attempt == 3  # once an attempt has its own, those are the job's


@pytest.mark.parametrize(("relative", "split"), [
    ("2/outputs/a/b.pt", (2, "a/b.pt")), ("2/log.txt", None), ("2/outputs", None), ("x/outputs/a", None),
    ("2/log-node1.txt", None), ("12/outputs/final/m", (12, "final/m")),
])
def test_keys_under_the_attempts_folder_split_into_attempt_and_path(relative: str, split: tuple | None) -> None:
    assert split_attempt_output(relative) == split
