"""Code snapshots: .gitignore (nested), .git excluded, the size limit, safe extraction."""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.artifacts import collect_files, extract_snapshot, make_snapshot


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content.encode() if isinstance(content, str) else content)


def roundtrip(src: Path, dest: Path, max_bytes: int = 10**9) -> set[str]:
    buf = io.BytesIO()
    make_snapshot(src, buf, max_bytes)
    buf.seek(0)
    extract_snapshot(buf, dest)
    return {str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()}


def test_gitignore_nested_and_git_excluded(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {
        ".gitignore": "*.log\nbuild/\n/data.bin\n",
        "train.py": "print(1)",
        "debug.log": "x",
        "build/out.o": "x",
        "data.bin": "x",
        ".git/HEAD": "ref",
        "pkg/data.bin": "kept: /data.bin is anchored to the root",
        "pkg/.gitignore": "secret.txt\n!keep.log\n",
        "pkg/secret.txt": "x",
        "pkg/keep.log": "kept by the nested negation",
        "pkg/other.log": "x",
        "secret.txt": "the nested rule does not apply above it",
    })
    got = roundtrip(src, tmp_path / "dest")
    assert got == {".gitignore", "train.py", "pkg/data.bin", "pkg/.gitignore", "pkg/keep.log", "secret.txt"}
    assert (tmp_path / "dest" / "train.py").read_text() == "print(1)"


def test_symlinks_inside_kept_outside_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"real.txt": "r"})
    os.symlink("real.txt", src / "inside")
    os.symlink("/etc/passwd", src / "outside")
    files, skipped = collect_files(src)
    assert [f.path for f in files] == ["inside", "real.txt"]
    assert skipped == ["outside"]
    dest = tmp_path / "dest"
    roundtrip(src, dest)
    assert (dest / "inside").read_text() == "r"


def test_too_large_is_refused_before_writing(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"big.bin": b"0" * 5000, "small.py": "x", "ignored.bin": b"0" * 10**6, ".gitignore": "ignored.bin\n"})
    buf = io.BytesIO()
    with pytest.raises(ModelyardError) as e:
        make_snapshot(src, buf, max_bytes=4096)
    assert e.value.code is ErrorCode.TOO_LARGE
    assert "4096 bytes" in e.value.message and "4.0 KiB" in e.value.message
    assert "big.bin" in e.value.message and "ignored.bin" not in e.value.message
    assert buf.getvalue() == b""


def test_progress_reports_uncompressed_bytes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"a": b"a" * 300_000, "b": b"b" * 10})
    calls: list[tuple[int, int]] = []
    info = make_snapshot(src, io.BytesIO(), 10**9, progress=lambda done, total: calls.append((done, total)))
    assert info.files == 2 and info.bytes == 300_010 and info.compressed_bytes > 0
    assert calls[-1] == (300_010, 300_010)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def tarball_with(name: str) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    buf.seek(0)
    return buf


def test_extract_rejects_traversal(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "dest"
    with pytest.raises(ModelyardError) as e:
        extract_snapshot(tarball_with("../evil.txt"), dest)
    assert e.value.code is ErrorCode.INVALID
    assert not (tmp_path / "a" / "evil.txt").exists()


def test_extract_keeps_absolute_names_inside(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    extract_snapshot(tarball_with(f"{tmp_path}/evil.txt"), dest)
    assert not (tmp_path / "evil.txt").exists()
    assert (dest / str(tmp_path).lstrip("/") / "evil.txt").read_bytes() == b"evil"


def test_extract_rejects_link_out(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("l")
        link.type = tarfile.SYMTYPE
        link.linkname = "../../outside"
        tar.addfile(link)
    buf.seek(0)
    with pytest.raises(ModelyardError):
        extract_snapshot(buf, tmp_path / "dest")


def test_garbage_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(ModelyardError) as e:
        extract_snapshot(io.BytesIO(b"not a tarball"), tmp_path / "dest")
    assert e.value.code is ErrorCode.INVALID
