"""Dataset versions in a real artifact store (local files and a moto S3 server): create,
idempotence, NAME / NAME:VERSION, list, remove with jobs using it, failed creates that
leave nothing, and the job cache (verified, shared, safe under concurrent fetches).
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_datasets import IMAGE_CLASSES, make_csv, make_images, make_mnist, make_plain, read_back, source_records

from modelyard.datasets import (
    FORMATS, Manifest, StoreIndex, cache_problems, create_dataset, get_version, list_datasets, materialise,
    remove_dataset,
)
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.artifacts import ArtifactStore


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "file":
        return ArtifactStore(f"file://{tmp_path / 'store'}")
    env = request.getfixturevalue("s3_env")
    return ArtifactStore(f"s3://{env['BUCKET']}/x")


def nothing_stored(store: ArtifactStore) -> bool:
    return store.list("datasets") == []


def test_create_is_idempotent_and_refs_pick_versions(store: ArtifactStore, tmp_path: Path) -> None:
    index = StoreIndex(store)
    src = make_mnist(tmp_path / "mnist", gz=True)
    seen: list[tuple[int, int]] = []
    first = create_dataset(store, index, "digits", str(src), split="train=0.8,val=0.2", seed=1,
                           description="tiny mnist", progress=lambda done, total: seen.append((done, total)))
    assert seen and seen[-1][0] == seen[-1][1] == first.size
    assert [(s.name, s.count, s.ratio) for s in first.splits] == [("train", 64, 0.8), ("val", 16, 0.2)]
    assert store.exists(f"datasets/digits/{first.version}/manifest.json")
    again = create_dataset(store, index, "digits", str(src), split="train=0.8,val=0.2", seed=1)
    assert again == first  # same content: the same version, not a duplicate
    other = create_dataset(store, index, "digits", str(src), split="train=0.8,val=0.2", seed=2)
    assert other.version != first.version
    assert [m.version for m in list_datasets(index)] == [first.version, other.version]
    assert get_version(index, "digits") == other
    assert get_version(index, f"digits:{first.version}") == first
    assert get_version(index, f"digits:{first.version[:6]}") == first
    with pytest.raises(ModelyardError) as e:
        get_version(index, "digits:0000aaaa")
    assert e.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(ModelyardError) as e:
        get_version(index, "nope")
    assert e.value.code is ErrorCode.NOT_FOUND


def test_remove_refuses_while_jobs_use_the_version(store: ArtifactStore, tmp_path: Path) -> None:
    index = StoreIndex(store)
    m = create_dataset(store, index, "plain", str(make_plain(tmp_path / "p")))
    with pytest.raises(ModelyardError) as e:
        remove_dataset(store, index, "plain", in_use=lambda name, version: [7, 3])
    assert e.value.code is ErrorCode.CONFLICT and "jobs 3, 7" in e.value.message and m.ref in e.value.message
    assert get_version(index, "plain") == m
    assert remove_dataset(store, index, m.ref, in_use=lambda name, version: []) == [m]
    assert list_datasets(index) == [] and nothing_stored(store)


@pytest.mark.parametrize("case", ["unreadable", "idx_counts", "split_sum", "format", "mxnet", "slash", "bad_image"])
def test_bad_input_is_a_clear_error_and_leaves_no_version(store: ArtifactStore, tmp_path: Path, case: str) -> None:
    index = StoreIndex(store)
    mnist = make_mnist(tmp_path / "mnist")
    args: dict[str, object] = {"name": "d", "source": str(mnist)}
    field, words = {
        "unreadable": ("source", ["no such file"]), "idx_counts": ("source", ["t10k-images", "20", "t10k-labels", "19"]),
        "split_sum": ("split", ["sum to 0.9"]), "format": ("format", ["unknown format", "webdataset"]),
        "mxnet": ("format", ["MXNet is retired"]), "slash": ("name", ["'/'"]), "bad_image": ("source", ["x.png"]),
    }[case]
    if case == "unreadable":
        args["source"] = str(tmp_path / "nowhere")
    elif case == "idx_counts":
        (mnist / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 19]) + bytes(19))
    elif case == "split_sum":
        args["split"] = "train=0.8,val=0.1"
    elif case in ("format", "mxnet"):
        args["fmt"] = "hdf5" if case == "format" else "recordio"
    elif case == "slash":
        args["name"] = "team/digits"
    else:  # fails while writing, after part of the data was processed
        folder = make_images(tmp_path / "imgs")
        (folder / "dog" / "x.png").write_bytes(b"\x89PNG broken")
        args["source"] = str(folder)
    with pytest.raises(ModelyardError) as e:
        create_dataset(store, index, **args)  # type: ignore[arg-type]
    assert e.value.field == field, e.value
    assert all(w in e.value.message for w in words), e.value.message
    assert nothing_stored(store) and list_datasets(index) == []


def test_a_failed_upload_removes_what_it_uploaded(store: ArtifactStore, tmp_path: Path) -> None:
    index = StoreIndex(store)

    def interrupted(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_dataset(store, index, "imgs", str(make_images(tmp_path / "i")), progress=interrupted)
    assert nothing_stored(store) and list_datasets(index) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_materialised_versions_read_back_in_every_format(store: ArtifactStore, tmp_path: Path, fmt: str) -> None:
    index = StoreIndex(store)
    src = make_images(tmp_path / "imgs")
    m = create_dataset(store, index, "imgs", str(src), split="train=0.5,val=0.5", fmt=fmt, seed=3)
    path = materialise(store, f"imgs:{m.version}", tmp_path / "cache")
    assert path == tmp_path / "cache" / "imgs" / m.version
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "train", "val"]
    assert Manifest.from_json((path / "manifest.json").read_bytes()) == m
    expected = source_records(src)
    for s in m.splits:
        labels: Counter[object] = Counter()
        if fmt == "files":
            for f in (path / s.name).rglob("*.png"):
                rel = f.relative_to(path / s.name).as_posix()
                assert f.read_bytes() == expected[rel][1]
                labels[rel.split("/")[0]] += 1
        elif fmt == "npz":
            with np.load(path / s.name / f"{s.name}.npz") as z:
                labels.update(z["classes"][z["y"]].tolist())
        else:
            labels.update(label for label, _payload in read_back(fmt, path, s.name).values())
        assert sum(labels.values()) == s.count and {str(k): v for k, v in labels.items()} == s.labels
        for cls, n in IMAGE_CLASSES.items():  # stratified: each class split in half, within one
            assert abs(labels[cls] - n / 2) <= 1


def test_tables_materialise_with_their_rows(store: ArtifactStore, tmp_path: Path) -> None:
    m = create_dataset(store, StoreIndex(store), "t", str(make_csv(tmp_path / "t.csv")), split="a=0.6,b=0.4", fmt="lmdb")
    path = materialise(store, m, tmp_path / "cache")
    rows = {k: v for s in m.splits for k, v in read_back("lmdb", path, s.name).items()}
    assert {k: v[1] for k, v in rows.items()} == {k: v[1] for k, v in source_records(tmp_path / "t.csv").items()}
    assert m.split("a").count == 30 and m.split("a").labels == {"no": 24, "yes": 6}


_FETCH = """
import sys, time
from modelyard.datasets import materialise
from modelyard.artifacts import ArtifactStore
fetched = []
def slow(done, total):
    fetched.append(done)
    time.sleep(0.2)  # keeps the winner busy long enough for the other to queue on the lock
print(materialise(ArtifactStore(sys.argv[1]), sys.argv[2], sys.argv[3], progress=slow), bool(fetched))
"""


def test_two_processes_fetching_at_once_share_one_verified_copy(store: ArtifactStore, tmp_path: Path) -> None:
    m = create_dataset(store, StoreIndex(store), "plain", str(make_plain(tmp_path / "p")), split="train=0.5,val=0.5")
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", _FETCH, store.url, m.ref, str(cache)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    outputs = [out.split() for out, _err in results]
    assert {o[0] for o in outputs} == {str(cache / "plain" / m.version)}
    assert sorted(o[1] for o in outputs) == ["False", "True"]  # one downloaded, the other used its copy
    assert [p.name for p in (cache / "plain").iterdir() if not p.name.startswith(".")] == [m.version]
    assert not list((cache / "plain").glob("*.partial-*"))
    path = cache / "plain" / m.version
    assert cache_problems(path, m, full=True) == []
    some = path / m.files[0].path
    assert not some.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert not path.stat().st_mode & stat.S_IWUSR


def test_a_damaged_cached_copy_is_detected_and_fetched_again(store: ArtifactStore, tmp_path: Path) -> None:
    m = create_dataset(store, StoreIndex(store), "plain", str(make_plain(tmp_path / "p")))
    path = materialise(store, m, tmp_path / "cache")
    victim = path / m.files[0].path
    original = victim.read_bytes()
    os.chmod(victim.parent, 0o755)
    os.chmod(victim, 0o644)
    victim.write_bytes(b"x" * len(original))  # same size, new mtime: the stamp check catches it
    assert cache_problems(path, m) == [f"{m.files[0].path}: changed since it was verified"]
    assert materialise(store, m, tmp_path / "cache") == path and victim.read_bytes() == original
    os.chmod(victim.parent, 0o755)
    os.chmod(victim, 0o644)
    st = victim.stat()
    victim.write_bytes(b"y" * len(original))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # forged mtime: only the full check sees it
    assert cache_problems(path, m) == []
    assert cache_problems(path, m, full=True) == [f"{m.files[0].path}: sha256 differs"]
    assert materialise(store, m, tmp_path / "cache", verify=True) == path and victim.read_bytes() == original


def test_a_corrupt_file_in_the_store_fails_the_fetch_and_leaves_no_copy(store: ArtifactStore, tmp_path: Path) -> None:
    m = create_dataset(store, StoreIndex(store), "imgs", str(make_images(tmp_path / "i")))
    store.put_bytes(b"tampered", f"{m.prefix}/{m.files[0].path}")
    with pytest.raises(ModelyardError, match="corrupt") as e:
        materialise(store, m.ref, tmp_path / "cache")
    assert e.value.code is ErrorCode.UNAVAILABLE
    assert [p.name for p in (tmp_path / "cache" / "imgs").iterdir() if not p.name.endswith((".lock",))] == []


def test_sources_can_be_read_from_s3(s3_env: dict[str, str], tmp_path: Path) -> None:
    """A SOURCE may be any fsspec URL the server reads: gzipped IDX files and an image folder on S3."""
    remote = ArtifactStore(f"s3://{s3_env['BUCKET']}/incoming")
    remote.sync_dir(make_mnist(tmp_path / "mnist", gz=True), "mnist", {})
    remote.sync_dir(make_images(tmp_path / "imgs"), "imgs", {})
    store = ArtifactStore(f"file://{tmp_path / 'store'}")
    index = StoreIndex(store)
    local = create_dataset(store, index, "digits", str(tmp_path / "mnist"), fmt="npz")
    from_s3 = create_dataset(store, index, "digits", f"s3://{s3_env['BUCKET']}/incoming/mnist", fmt="npz")
    assert from_s3.version == local.version and from_s3.source_kind == "idx"
    imgs = create_dataset(store, index, "imgs", f"s3://{s3_env['BUCKET']}/incoming/imgs", split="a=0.5,b=0.5")
    assert imgs.source_kind == "images" and imgs.classes == sorted(IMAGE_CLASSES)
    kept = create_dataset(store, index, "raw", str(make_csv(tmp_path / "t" / "t.csv").parent), kind="folder")
    assert [f.path for f in kept.files] == ["all/t.csv"]
