"""Hostile dataset sources are refused with the limit named (413) and leave nothing behind: a
gzip tar bomb, a tar of too many members, an upload over the byte limit (declared and not),
and ``.npz`` and IDX files whose headers declare arrays the server must not allocate."""
from __future__ import annotations

import io
import os
import struct
import tarfile
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dataset_helpers import Site, site, tar_of, upload
from numpy.lib import format as npformat

from modelyard.datasets.bounds import Limits

MiB = 1024 * 1024
SMALL = Limits(upload=1 * MiB, unpacked=4 * MiB, members=50, array=16 * MiB, records=1_000_000)


@pytest.fixture
def s(tmp_path: Path, database_url: str) -> Iterator[Site]:
    with site(tmp_path, database_url, SMALL) as found:
        yield found


def refused(r, variable: str) -> None:  # type: ignore[no-untyped-def]
    assert r.status_code == 413, r.text
    assert variable in r.json()["error"]["message"], r.text


def nothing_left(s: Site, name: str | None = None) -> None:
    uploads = s.platform.settings.home / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    if name is not None:
        assert s.clients["admin"].get(f"/datasets/{name}").status_code == 404
        assert not (s.platform.settings.home / "artifacts" / "datasets" / name).exists()


class Zeros(io.RawIOBase):
    """``n`` zero bytes, read in chunks: a large member that never sits in memory."""

    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        k = min(len(b), self.left)
        b[:k] = bytes(k)
        self.left -= k
        return k


def gzip_bomb(size: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("bomb/zeros.bin")
        info.size = size  # ~1000 times what it takes compressed
        tar.addfile(info, Zeros(info.size))
    return buf.getvalue()


def test_a_gzip_tar_bomb_is_refused_before_it_is_unpacked(s: Site) -> None:
    bomb = gzip_bomb(64 * MiB)  # 16 times the unpacked limit
    assert len(bomb) < SMALL.upload
    refused(s.clients["bob"].post("/datasets/uploads", content=bomb), "MODELYARD_MAX_DATASET_UNPACKED")
    nothing_left(s)


def test_a_gzip_tar_bomb_under_the_unpacked_limit_is_refused_by_its_ratio(tmp_path: Path, database_url: str) -> None:
    bomb = gzip_bomb(96 * MiB)  # ~96 KB: a thousand times its size, well under the default 50 GiB
    with site(tmp_path, database_url) as defaults:
        refused(defaults.clients["bob"].post("/datasets/uploads", content=bomb), "MODELYARD_MAX_DATASET_RATIO")
        nothing_left(defaults)


def test_a_tar_of_too_many_members_is_refused(s: Site) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(SMALL.members + 10):
            info = tarfile.TarInfo(f"many/{i}.txt")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    refused(s.clients["bob"].post("/datasets/uploads", content=buf.getvalue()), "MODELYARD_MAX_DATASET_MEMBERS")
    nothing_left(s)


def test_an_upload_over_the_byte_limit_is_refused_whether_or_not_it_says_its_size(s: Site, tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "blob.bin").write_bytes(os.urandom(SMALL.upload + 4096))
    data = tar_of(big)
    c = s.clients["bob"]
    refused(c.post("/datasets/uploads", content=data), "MODELYARD_MAX_DATASET_UPLOAD")  # Content-Length says so
    nothing_left(s)
    chunks = (data[i:i + 65536] for i in range(0, len(data), 65536))  # chunked: no length up front
    refused(c.post("/datasets/uploads", content=chunks), "MODELYARD_MAX_DATASET_UPLOAD")
    nothing_left(s)


def write_npz_declaring(path: Path, shape: tuple[int, ...], *, fortran: bool = False) -> None:
    """An .npz whose ``x`` really holds prod(shape) zero bytes, deflated (a few hundred KB)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("x.npy", "w", force_zip64=True) as f:
            npformat.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": fortran, "shape": shape})
            left = int(np.prod(shape))
            while left:
                k = min(left, 4 * MiB)
                f.write(bytes(k))
                left -= k


@pytest.mark.parametrize(("limits", "shape", "fortran", "variable"), [
    (SMALL, (4, 48 * MiB), False, "MODELYARD_MAX_ARRAY_BYTES"),  # 192 MB in all, over a 16 MB limit
    (Limits(), (1, 96 * MiB), False, "MODELYARD_MAX_RECORD_BYTES"),  # the default limits: one 96 MB row
    (Limits(), (8, 12 * MiB), True, "MODELYARD_MAX_RECORD_BYTES"),  # Fortran order: 96 MB read in one piece
], ids=["array", "row", "fortran"])
def test_an_npz_declaring_a_huge_array_is_refused_without_allocating_it(
        tmp_path: Path, database_url: str, limits: Limits, shape: tuple[int, ...], fortran: bool,
        variable: str) -> None:
    src = tmp_path / "npzbomb"
    src.mkdir()
    write_npz_declaring(src / "d.npz", shape, fortran=fortran)
    data = tar_of(src)
    assert len(data) < 1 * MiB
    with site(tmp_path, database_url, limits) as s:
        c = s.clients["bob"]
        upload_id = upload(c, data)
        tracemalloc.start()
        try:
            r = c.post("/datasets", json={"name": "npzbomb", "upload": upload_id})
            _now, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        refused(r, variable)
        assert "'x'" in r.json()["error"]["message"] and "upload" in r.json()["error"]["message"]
        assert peak < 32 * MiB, f"the server allocated {peak / MiB:.0f} MiB"
        nothing_left(s, "npzbomb")


def write_idx_header(path: Path, dims: tuple[int, ...], data: bytes = b"") -> None:
    path.write_bytes(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data)


@pytest.mark.parametrize(("images", "labels", "variable"), [
    ((100, 1000, 1000), (100,), "MODELYARD_MAX_ARRAY_BYTES"),  # 100 MB of images declared, 0 sent
    ((2**32 - 1, 1, 1), (2**32 - 1,), "MODELYARD_MAX_DATASET_RECORDS"),  # 4 billion rows declared
])
def test_an_idx_file_declaring_a_huge_array_is_refused(s: Site, tmp_path: Path, images: tuple[int, ...],
                                                       labels: tuple[int, ...], variable: str) -> None:
    src = tmp_path / "idxbomb"
    src.mkdir()
    write_idx_header(src / "train-images-idx3-ubyte", images, bytes(1000))
    write_idx_header(src / "train-labels-idx1-ubyte", labels, bytes(100))
    c = s.clients["bob"]
    r = c.post("/datasets", json={"name": "idxbomb", "upload": upload(c, tar_of(src))})
    refused(r, variable)
    nothing_left(s, "idxbomb")


def test_sources_within_the_limits_still_import(s: Site, tmp_path: Path) -> None:
    src = tmp_path / "fine"
    src.mkdir()
    np.savez(src / "d.npz", x=np.zeros((100, 8), np.float32), y=np.arange(100) % 3)
    c = s.clients["bob"]
    r = c.post("/datasets", json={"name": "fine", "upload": upload(c, tar_of(src, mode="w:gz"))})
    assert r.status_code == 201, r.text
