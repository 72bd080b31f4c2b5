"""Removing a dataset version and queueing a job pinned to it agree, whichever comes first:
the job's row and the removal are each checked and written under the dataset's lock."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import wait_for
from test_datasets import make_npz

from modelyard.config import Settings
from modelyard.datasets import create_dataset, get_version
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs import JobSpec
from modelyard.server.platform import Platform
from modelyard.db import jobs as store_jobs
from modelyard.db.records import User
from modelyard.db.users import create_user, get_user_by_name


@pytest.fixture
def platform(database_url: str, tmp_path: Path) -> Iterator[Platform]:
    home = tmp_path / "home"
    settings = Settings(home=home, database_url=database_url, storage_url=(home / "artifacts").as_uri(),
                        capacity="gpus=0,cpus=2,memory=8G")
    p = Platform(settings, server_url=None)  # not started: no scheduler, nothing launches
    yield p
    p.close()


def ann(p: Platform) -> User:
    """The user who owns the dataset and submits the jobs."""
    return get_user_by_name(p.db, "ann") or create_user(p.db, "ann")[0]


def version_of(p: Platform, tmp_path: Path) -> str:
    owner = ann(p)
    p.dataset_access.claim("digits", owner, None)
    m = create_dataset(p.storage, p.dataset_access.recording_index(owner), "digits", str(make_npz(tmp_path / "d.npz")),
                       fmt="npz")
    return m.ref


def spec(ref: str) -> JobSpec:
    return JobSpec(command=["true"], dataset=ref)


def test_a_version_removed_after_the_submit_pinned_it_queues_no_job(platform: Platform, tmp_path: Path) -> None:
    ref = version_of(platform, tmp_path)
    user = ann(platform)
    pin = platform.pin_dataset
    calls = []

    def pin_then_lose_it(r: str, u: User):  # the first look succeeds; then an rm gets in before the job's row
        m = pin(r, u)
        calls.append(r)
        if len(calls) == 1:
            platform.remove_dataset(ref, u)
        return m

    platform.pin_dataset = pin_then_lose_it  # type: ignore[method-assign]
    with pytest.raises(ModelyardError) as e:
        platform.submit(user, spec(ref), snapshot=None)
    assert e.value.code is ErrorCode.INVALID and e.value.field == "dataset"
    assert len(calls) == 1  # the second look, under the lock, found it gone
    assert store_jobs.list_jobs(platform.db, user=user)[1] == 0


def test_restart_of_a_job_whose_version_is_gone_is_refused(platform: Platform, tmp_path: Path) -> None:
    ref = version_of(platform, tmp_path)
    user = ann(platform)
    job = platform.submit(user, spec(ref), snapshot=None)
    platform.stop(user, job.id)  # queued -> stopped: it no longer holds the version
    platform.remove_dataset(ref, ann(platform))
    with pytest.raises(ModelyardError) as e:
        platform.restart(user, job.id)
    assert e.value.field == "dataset"
    assert store_jobs.get_job(platform.db, job.id).state.value == "stopped"


def test_a_queued_job_keeps_its_version_from_removal(platform: Platform, tmp_path: Path) -> None:
    ref = version_of(platform, tmp_path)
    job = platform.submit(ann(platform), spec(ref), snapshot=None)
    with pytest.raises(ModelyardError, match=f"by job {job.id}") as e:
        platform.remove_dataset(ref, ann(platform))
    assert e.value.code is ErrorCode.CONFLICT
    assert get_version(platform.datasets, ref).ref == ref


def test_a_submit_waits_for_a_removal_in_progress_then_is_refused(pg_url: str, tmp_path: Path) -> None:
    """On PostgreSQL the lock is an advisory one: the submit is seen waiting on it."""
    home = tmp_path / "home"
    p = Platform(Settings(home=home, database_url=pg_url, storage_url=(home / "artifacts").as_uri(),
                          capacity="gpus=0,cpus=2,memory=8G"), server_url=None)
    try:
        ref = version_of(p, tmp_path)
        user = ann(p)
        holding, release = threading.Event(), threading.Event()

        def removal() -> None:  # Platform.remove_dataset, held open between its check and its commit
            with p.db.write() as conn:
                store_jobs.lock_dataset(conn, "digits")
                holding.set()
                release.wait(60)
                p.datasets.remove(get_version(p.datasets, ref))

        remover = threading.Thread(target=removal)
        remover.start()
        assert holding.wait(30)
        outcome: list[object] = []
        submitter = threading.Thread(target=lambda: outcome.append(_try(lambda: p.submit(user, spec(ref), snapshot=None))))
        submitter.start()
        waiting = sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        with p.db.read() as conn:
            wait_for(lambda: conn.execute(waiting).scalar_one() == 1, 30, what="the submit to wait on the lock")
        assert not outcome  # still waiting
        release.set()
        remover.join(30)
        submitter.join(30)
        assert isinstance(outcome[0], ModelyardError) and outcome[0].field == "dataset"
        assert store_jobs.list_jobs(p.db, user=user)[1] == 0
    finally:
        release.set()
        p.close()


def _try(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except ModelyardError as e:
        return e
