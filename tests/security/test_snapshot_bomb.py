"""A snapshot bomb: a small .tar.gz that unpacks to far more than MODELYARD_MAX_SNAPSHOT, or holds
more files than MODELYARD_MAX_SNAPSHOT_FILES. Refused at upload with a 413 naming the limit,
and refused again by the supervisor's extraction (a snapshot already in the store)."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from conftest import wait_for

from modelyard.errors import ModelyardError
from modelyard.artifacts.snapshot import SnapshotLimits, check_snapshot, extract_snapshot


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def bomb(unpacked: int = 0, files: int = 0) -> bytes:
    """``unpacked`` bytes of zeros in one file, or ``files`` empty files, gzip'd (a few KB)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if unpacked:
            info = tarfile.TarInfo("zeros.bin")
            info.size = unpacked
            tar.addfile(info, io.BufferedReader(_Zeros(unpacked)))
        for i in range(files):
            tar.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    return buf.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    from servers import ServerProcess

    srv = ServerProcess(tmp_path_factory.mktemp("bomb") / "home", env={
        "MODELYARD_MAX_SNAPSHOT": "1M", "MODELYARD_MAX_SNAPSHOT_FILES": "50",
        "MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G"}).start()
    yield srv
    srv.stop()


def upload(server, body: bytes):  # type: ignore[no-untyped-def]
    with server.client() as c:
        return c.post("/snapshots", content=body, headers={"Content-Type": "application/gzip"})


def test_a_snapshot_that_unpacks_past_the_limit_is_refused_at_upload(server) -> None:  # type: ignore[no-untyped-def]
    body = bomb(unpacked=64 * 1024 * 1024)
    assert len(body) < 1024 * 1024  # under the compressed limit: only the unpacked size gives it away
    r = upload(server, body)
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert "unpacks to more than" in err["message"] and "(1048576 bytes)" in err["message"]
    assert "MODELYARD_MAX_SNAPSHOT" in err["message"] and err["field"] == "snapshot"
    assert not list((server.home / "artifacts").rglob("*.tar.gz"))  # nothing stored


def test_a_snapshot_of_too_many_files_is_refused_at_upload(server) -> None:  # type: ignore[no-untyped-def]
    r = upload(server, bomb(files=51))
    assert r.status_code == 413 and "MODELYARD_MAX_SNAPSHOT_FILES" in r.json()["error"]["message"], r.text
    assert upload(server, bomb(files=50)).status_code == 201  # at the limit is fine


def test_garbage_is_a_422_naming_the_snapshot(server) -> None:  # type: ignore[no-untyped-def]
    r = upload(server, b"not a tarball at all")
    assert r.status_code == 422 and r.json()["error"]["field"] == "snapshot", r.text


def test_the_supervisor_refuses_a_bomb_already_in_the_store_before_unpacking_it(server) -> None:  # type: ignore[no-untyped-def]
    """One stored before the limit (or by another way in): the job fails start_failed, naming the limit."""
    from modelyard.artifacts import ArtifactStore

    store = ArtifactStore((server.home / "artifacts").as_uri())
    store.put_bytes(bomb(unpacked=8 * 1024 * 1024), "snapshots/bomb.tar.gz")
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": ["true"]}, "snapshot": "snapshots/bomb.tar.gz"})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        wait_for(lambda: c.get(f"/jobs/{job_id}").json()["state"] == "failed", timeout=60)
        attempt = c.get(f"/jobs/{job_id}").json()["attempts"][0]
    assert attempt["reason"] == "start_failed" and "MODELYARD_MAX_SNAPSHOT" in attempt["message"], attempt
    code = server.home / "runs" / f"{job_id}-1" / "code"
    assert not (code / "zeros.bin").exists()


def test_extraction_checks_each_member_before_writing_it(tmp_path: Path) -> None:
    with pytest.raises(ModelyardError, match="MODELYARD_MAX_SNAPSHOT_FILES"):
        extract_snapshot(io.BytesIO(bomb(files=11)), tmp_path / "a", SnapshotLimits(max_files=10))
    assert len(list((tmp_path / "a").iterdir())) == 10
    with pytest.raises(ModelyardError) as info:
        extract_snapshot(io.BytesIO(bomb(unpacked=2 * 1024 * 1024)), tmp_path / "b", SnapshotLimits(max_bytes=10**6))
    assert info.value.http_status == 413 and not (tmp_path / "b" / "zeros.bin").exists()
    assert check_snapshot(io.BytesIO(bomb(files=3)), SnapshotLimits()).files == 3
