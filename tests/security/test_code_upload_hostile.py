"""A browser's code upload (POST /snapshots/upload) is hostile input: zip slip, absolute paths, links,
a zip bomb, a tar bomb and a flood of files are refused with a clear error beside the code field,
nothing is written outside the upload's own staging folder, and that folder is gone afterwards."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from inproc import InProc, in_process

LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProc]:
    env = {"MODELYARD_MAX_SNAPSHOT": "1M", "MODELYARD_MAX_SNAPSHOT_FILES": "50"}
    with in_process(tmp_path_factory.mktemp("hostile") / "home", env=env) as ip:
        yield ip


def post(ip: InProc, parts: list) -> dict:  # type: ignore[type-arg]
    r = ip.client.post("/api/v1/snapshots/upload", files=parts, headers=ip.auth(ip.admin))
    body = r.json()
    body["status"] = r.status_code
    return body


def zipped(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return buf.getvalue()


def link_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def tarred(*members: tarfile.TarInfo) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for m in members:
            tar.addfile(m, io.BytesIO(b"x" * m.size) if m.isfile() else None)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "", size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, size if kind == tarfile.REGTYPE else 0
    return info


def assert_nothing_left(ip: InProc, tmp: Path) -> None:
    home = ip.platform.settings.home
    assert not list((home / "code-uploads").iterdir()), "the staging folder outlived its upload"
    assert not list(home.parent.rglob("evil*")), "a file landed outside the staging folder"


@pytest.mark.parametrize("name", ["../evil.py", "a/../../evil.py", "/tmp/evil.py", "..\\evil.py", "C:/evil.py",
                                  "a//evil.py"])
def test_zip_slip_is_refused(inproc: InProc, name: str, tmp_path: Path) -> None:
    body = post(inproc, [("archive", ("code.zip", zipped([("ok.py", b""), (name, b"boom")])))])
    assert body["status"] == 422 and body["error"]["field"] == "code", body
    assert "not a path inside the folder" in body["error"]["message"]
    assert_nothing_left(inproc, tmp_path)


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil.py", "a/../../evil.py"])
def test_a_folder_part_with_an_escaping_path_is_refused(inproc: InProc, name: str, tmp_path: Path) -> None:
    body = post(inproc, [("file", ("ok.py", b"")), ("file", (name, b"boom"))])
    assert body["status"] == 422 and "not a path inside the folder" in body["error"]["message"], body
    assert_nothing_left(inproc, tmp_path)


def test_a_symlink_in_a_zip_is_refused(inproc: InProc, tmp_path: Path) -> None:
    body = post(inproc, [("archive", ("code.zip", zipped([("ok.py", b""), (link_info("evil-link"), b"/etc/passwd")])))])
    assert body["status"] == 422 and "links are refused" in body["error"]["message"], body
    assert_nothing_left(inproc, tmp_path)


@pytest.mark.parametrize("member", [
    tar_member("evil-link", tarfile.SYMTYPE, "/etc/passwd"),
    tar_member("evil-inside", tarfile.SYMTYPE, "ok.py"),  # even one pointing inside: links are refused
    tar_member("evil-hard", tarfile.LNKTYPE, "ok.py"),
])
def test_links_in_a_tar_gz_are_refused(inproc: InProc, member: tarfile.TarInfo, tmp_path: Path) -> None:
    body = post(inproc, [("archive", ("code.tar.gz", tarred(tar_member("ok.py"), member)))])
    assert body["status"] == 422 and "links are refused" in body["error"]["message"], body
    assert_nothing_left(inproc, tmp_path)


def test_a_tar_gz_leaving_the_folder_is_refused(inproc: InProc, tmp_path: Path) -> None:
    body = post(inproc, [("archive", ("code.tgz", tarred(tar_member("ok.py"), tar_member("../evil.py"))))])
    assert body["status"] == 422, body
    assert_nothing_left(inproc, tmp_path)


def test_a_zip_bomb_is_refused_before_it_fills_the_disk(inproc: InProc, tmp_path: Path) -> None:
    data = zipped([("zeros.bin", bytes(64 * LIMIT))])
    assert len(data) < LIMIT // 4  # small on the wire: only what it unpacks to gives it away
    body = post(inproc, [("archive", ("bomb.zip", data))])
    assert body["status"] == 413 and "MODELYARD_MAX_SNAPSHOT" in body["error"]["message"], body
    assert_nothing_left(inproc, tmp_path)


def test_a_zip_bomb_whose_header_understates_its_size_is_refused(inproc: InProc, tmp_path: Path) -> None:
    # the headers say 10 bytes; the data inflate to 64 MiB: no more than the headers' size is inflated (then its
    # CRC fails), and every inflated block counts against the limit whatever the headers say
    raw = bytearray(zipped([("zeros.bin", bytes(64 * LIMIT))]))
    size = (64 * LIMIT).to_bytes(4, "little")
    raw[:] = raw.replace(size, (10).to_bytes(4, "little"))
    body = post(inproc, [("archive", ("bomb.zip", bytes(raw)))])
    assert body["status"] in (413, 422) and body["error"]["field"] in ("code", "snapshot"), body
    assert_nothing_left(inproc, tmp_path)


def test_a_zip_of_too_many_files_is_refused(inproc: InProc, tmp_path: Path) -> None:
    body = post(inproc, [("archive", ("many.zip", zipped([(f"f{i}.py", b"") for i in range(51)])))])
    assert body["status"] == 413 and "MODELYARD_MAX_SNAPSHOT_FILES" in body["error"]["message"], body
    assert_nothing_left(inproc, tmp_path)


def test_a_flood_of_ignored_parts_is_cut_off(inproc: InProc, tmp_path: Path) -> None:
    parts = [("file", (".gitignore", b"*.log\n")), ("file", ("ok.py", b""))]
    parts += [("file", (f"{i}.log", b"")) for i in range(10 * 50)]
    body = post(inproc, parts)
    assert body["status"] == 413 and "parts" in body["error"]["message"], body
    assert_nothing_left(inproc, tmp_path)


def test_an_upload_needs_a_token(inproc: InProc) -> None:
    r = inproc.client.post("/api/v1/snapshots/upload", files=[("file", ("ok.py", b""))])
    assert r.status_code == 401


def test_an_upload_is_held_to_the_snapshot_limits_not_the_json_body_limit(inproc: InProc) -> None:
    from modelyard.server.body_limit import MAX_JSON_BODY

    parts = [("file", (".gitignore", b"cache/\n")), ("file", ("weights.bin", b"w" * (LIMIT // 2))),
             ("file", ("cache/blob", b"c" * MAX_JSON_BODY))]  # dropped on arrival: the body is over the JSON limit
    body = post(inproc, parts)
    assert body["status"] == 201 and body["files"] == 2, body
