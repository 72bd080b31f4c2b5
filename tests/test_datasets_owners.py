"""Dataset owners below the API: the access policy as a table, the owners' store on both
databases (a name claimed by two users at once goes to exactly one), and the bounds read
from the environment."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelyard.config import Settings
from modelyard.datasets import StoreIndex
from modelyard.datasets.access import PRIVATE, PUBLIC, Ownership, can_change, can_read, shown_source
from modelyard.datasets.bounds import Limits
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.services.datasets import STALE_CLAIM, DatasetService
from modelyard.artifacts import ArtifactStore
from modelyard.db import datasets as store_ds
from modelyard.db.engine import Database
from modelyard.db.records import User
from modelyard.db.users import create_user

ANN, BOB, ADMIN = User(2, "ann", False), User(3, "bob", False), User(1, "admin", True)


@pytest.mark.parametrize(("visibility", "caller", "read", "change"), [
    (PRIVATE, ANN, True, True), (PRIVATE, BOB, False, False), (PRIVATE, ADMIN, True, True),
    (PUBLIC, ANN, True, True), (PUBLIC, BOB, True, False), (PUBLIC, ADMIN, True, True),
])
def test_who_may_read_and_change_a_dataset_of_anns(visibility: str, caller: User, read: bool, change: bool) -> None:
    o = Ownership("d", ANN.id, ANN.name, visibility)
    assert (can_read(o, caller), can_change(o, caller)) == (read, change)


def test_a_server_path_is_shown_to_admins_only() -> None:
    assert shown_source("/srv/home/uploads/ab/x", BOB, on_server=True, upload=True) == "upload"
    assert shown_source("/data/mnist", BOB, on_server=True, upload=False) == "server"
    assert shown_source("/data/mnist", ADMIN, on_server=True, upload=False) == "/data/mnist"
    assert shown_source("s3://team/mnist", BOB, on_server=False, upload=False) == "s3://team/mnist"


def test_a_name_claimed_by_two_users_at_once_goes_to_exactly_one(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    db.migrate()
    try:
        users = [create_user(db, name)[0] for name in ("ann", "bob")]
        service = DatasetService(db, StoreIndex(ArtifactStore((tmp_path / "store").as_uri())), uploads=tmp_path)
        start, outcome = threading.Barrier(2), {}

        def claim(user: User) -> None:
            start.wait()
            try:
                outcome[user.name] = service.claim("shared", user, PRIVATE)
            except ModelyardError as e:
                outcome[user.name] = e.code

        threads = [threading.Thread(target=claim, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcome.values(), key=str) == sorted([True, ErrorCode.NOT_FOUND], key=str)
        winner = next(name for name, got in outcome.items() if got is True)
        assert store_ds.ownership(db, "shared").owner == winner
    finally:
        db.dispose()


def test_the_bounds_come_from_the_environment(tmp_path: Path) -> None:
    s = Settings.from_env({"MODELYARD_HOME": str(tmp_path), "MODELYARD_MAX_DATASET_UPLOAD": "1G",
                           "MODELYARD_MAX_DATASET_UNPACKED": "2G", "MODELYARD_MAX_DATASET_MEMBERS": "10",
                           "MODELYARD_MAX_DATASET_RATIO": "7",
                           "MODELYARD_MAX_ARRAY_BYTES": "64M", "MODELYARD_MAX_DATASET_RECORDS": "1000",
                           "MODELYARD_MAX_RECORD_BYTES": "1M"})
    assert s.dataset_limits == Limits(upload=2**30, unpacked=2 * 2**30, members=10, ratio=7, array=64 * 2**20,
                                    records=1000, record=2**20)
    assert Settings.from_env({"MODELYARD_HOME": str(tmp_path)}).dataset_limits == Limits()


def test_a_name_whose_create_never_finished_is_free_again_a_day_later(database_url: str, tmp_path: Path) -> None:
    db = Database(database_url)
    db.migrate()
    try:
        ann, bob = (create_user(db, name)[0] for name in ("ann", "bob"))
        service = DatasetService(db, StoreIndex(ArtifactStore((tmp_path / "store").as_uri())), uploads=tmp_path)
        with db.write() as conn:  # what a server stopped in the middle of ann's creates leaves
            store_ds.claim(conn, "fresh", ann, PRIVATE)
            store_ds.claim(conn, "stale", ann, PRIVATE, now=time.time() - STALE_CLAIM - 60)
        with pytest.raises(ModelyardError) as e:
            service.claim("fresh", bob, None)  # it may still be running
        assert e.value.code is ErrorCode.NOT_FOUND
        assert service.claim("stale", bob, None) is True
        assert store_ds.ownership(db, "stale").owner == "bob"
    finally:
        db.dispose()
