"""ArtifactStore contract, run against the local filesystem and a real S3 API (moto server)."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.artifacts import ArtifactStore


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file":
        return ArtifactStore((tmp_path / "artifacts").as_uri())
    env = request.getfixturevalue("s3_env")
    return ArtifactStore(f"s3://{env['BUCKET']}/root")


def test_put_and_read_back(store: ArtifactStore, tmp_path: Path) -> None:
    local = tmp_path / "a.bin"
    local.write_bytes(b"x" * 1000)
    assert store.put_file(local, "jobs/1/a.bin") == 1000
    assert store.exists("jobs/1/a.bin")
    assert store.size("jobs/1/a.bin") == 1000
    with store.open("jobs/1/a.bin") as f:
        assert f.read() == b"x" * 1000
    store.get_file("jobs/1/a.bin", tmp_path / "out" / "b.bin")
    assert (tmp_path / "out" / "b.bin").read_bytes() == b"x" * 1000


def test_put_stream_is_chunked(store: ArtifactStore) -> None:
    data = os.urandom(300_000)
    assert store.put_stream(io.BytesIO(data), "s/blob", chunk_size=65536) == len(data)
    assert store.read_bytes("s/blob") == data


def test_failed_stream_leaves_nothing_under_the_key(store: ArtifactStore) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("disk gone")
            return b"y" * 1000

    with pytest.raises(OSError):
        store.put_stream(Broken(), "half/obj", chunk_size=1000)
    assert not store.exists("half/obj")
    assert store.list("half") == []


def test_missing_key_is_not_found(store: ArtifactStore) -> None:
    assert not store.exists("nope")
    with pytest.raises(ModelyardError) as e:
        store.open("nope")
    assert e.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(ModelyardError):
        store.size("nope")


def test_list_and_delete_prefix(store: ArtifactStore) -> None:
    store.put_bytes(b"1", "p/a.txt")
    store.put_bytes(b"22", "p/sub/b.txt")
    store.put_bytes(b"333", "q/c.txt")
    listed = store.list("p")
    assert [(e.path, e.size) for e in listed] == [("a.txt", 1), ("sub/b.txt", 2)]
    assert all(e.mtime > 0 for e in listed)
    assert store.list("missing") == []
    store.delete_prefix("p")
    assert store.list("p") == []
    assert store.exists("q/c.txt")
    store.delete_prefix("p")  # absent is fine


def test_copy_prefix_copies_every_file_and_leaves_the_source(store: ArtifactStore) -> None:
    """A registered version's files are copied so (services/registry.py)."""
    store.put_bytes(b"1", "src/MLmodel")
    store.put_bytes(b"22", "src/deep/model.pkl")
    store.put_bytes(b"x", "src-other/z")  # a sibling whose name starts alike is not under src/
    assert store.copy_prefix("src", "dst/versions/1") == 3
    assert [(e.path, e.size) for e in store.list("dst/versions/1")] == [("MLmodel", 1), ("deep/model.pkl", 2)]
    assert store.read_bytes("src/deep/model.pkl") == b"22"


def test_keys_cannot_escape_the_root(store: ArtifactStore) -> None:
    for key in ("../x", "a/../../x", "/etc/passwd"):
        with pytest.raises(ModelyardError) as e:
            store.put_bytes(b"", key)
        assert e.value.code is ErrorCode.INVALID


def test_sync_dir_uploads_only_changes(store: ArtifactStore, tmp_path: Path) -> None:
    out = tmp_path / "output"
    (out / "ckpt").mkdir(parents=True)
    (out / "a.txt").write_text("a")
    (out / "ckpt" / "1.pt").write_bytes(b"1" * 100)
    state: dict[str, tuple[int, int]] = {}
    first = store.sync_dir(out, "jobs/1/outputs", state)
    assert sorted(first.uploaded) == ["a.txt", "ckpt/1.pt"]
    assert store.sync_dir(out, "jobs/1/outputs", state).uploaded == []
    (out / "ckpt" / "2.pt").write_bytes(b"2" * 10)
    (out / "a.txt").write_text("b")  # same size, new mtime
    os.utime(out / "a.txt", ns=(1, 1))
    third = store.sync_dir(out, "jobs/1/outputs", state)
    assert sorted(third.uploaded) == ["a.txt", "ckpt/2.pt"]
    assert store.read_bytes("jobs/1/outputs/a.txt") == b"b"

    dest = tmp_path / "restored"
    assert store.download_prefix("jobs/1/outputs", dest) == 3
    assert (dest / "ckpt" / "1.pt").read_bytes() == b"1" * 100
    assert (dest / "a.txt").read_text() == "b"
    assert store.download_prefix("jobs/404", tmp_path / "empty") == 0


def test_s3_honours_the_endpoint_from_the_environment(s3_env: dict[str, str]) -> None:
    store = ArtifactStore(f"s3://{s3_env['BUCKET']}")
    store.put_bytes(b"hello", "k")
    import boto3

    body = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"]).get_object(Bucket=s3_env["BUCKET"], Key="k")["Body"]
    assert body.read() == b"hello"
