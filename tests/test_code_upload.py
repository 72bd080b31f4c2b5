"""POST /snapshots/upload: a folder's files (multipart) or a .zip / .tar.gz, made into the snapshot the
CLI would have uploaded (.gitignore honoured, limits applied), and a job that runs that code."""
from __future__ import annotations

import io
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import wait_for
from servers import ServerProcess

from modelyard.artifacts.snapshot import IgnoreRules

PY = sys.executable
TRAIN = b"import helper\nprint('trained with', helper.LR)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("upload") / "home", env={
        "MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G", "MODELYARD_MAX_SNAPSHOT": "64K",
        "MODELYARD_MAX_SNAPSHOT_FILES": "20"}).start()
    yield srv
    srv.stop()


def upload(server: ServerProcess, parts: list[tuple[str, tuple[str, bytes]]]) -> httpx.Response:
    with server.client() as c:
        return c.post("/snapshots/upload", files=parts)


def folder(files: dict[str, bytes]) -> list[tuple[str, tuple[str, bytes]]]:
    return [("file", (path, data)) for path, data in files.items()]


def snapshot_names(server: ServerProcess, key: str) -> list[str]:
    with tarfile.open(server.home / "artifacts" / key, "r:gz") as tar:
        return sorted(m.name for m in tar.getmembers() if m.isfile())


def run_with(server: ServerProcess, key: str) -> list[str]:
    with server.client() as c:
        job = c.post("/jobs", json={"spec": {"command": [PY, "train.py"]}, "snapshot": key}).json()
        wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] in ("succeeded", "failed"),
                 timeout=60, what="the job ended")
        assert c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded"
        return [line["text"] for line in c.get(f"/jobs/{job['id']}/logs").json()["lines"]]


def test_a_folder_upload_honours_gitignore_and_the_job_runs_it(server: ServerProcess) -> None:
    r = upload(server, folder({
        ".gitignore": b"*.ckpt\ndata/\n", "pkg/.gitignore": b"!keep.ckpt\nsecret.txt\n",
        "train.py": TRAIN, "helper.py": b"LR = 0.01\n", "model.ckpt": b"x" * 100, "data/big.bin": b"y" * 100,
        "pkg/keep.ckpt": b"k", "pkg/secret.txt": b"s", "pkg/mod.py": b"", ".git/HEAD": b"ref",
    }))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["key"].startswith("snapshots/") and body["files"] == 6
    assert snapshot_names(server, body["key"]) == [".gitignore", "helper.py", "pkg/.gitignore", "pkg/keep.ckpt",
                                                  "pkg/mod.py", "train.py"]
    assert "trained with 0.01" in run_with(server, body["key"])


def test_ignored_files_do_not_count_against_the_limits(server: ServerProcess) -> None:
    # 30 ignored files over the 20-file limit, and 200 KB of them over the 64 KB one: dropped on arrival
    files = {".gitignore": b"logs/\n", "train.py": b"print('ok')\n",
             **{f"logs/{i}.txt": b"z" * 7000 for i in range(30)}}
    r = upload(server, folder(files))
    assert r.status_code == 201 and r.json()["files"] == 2, r.text


def test_the_same_folder_as_zip_or_tar_gz_is_the_same_code(server: ServerProcess) -> None:
    files = {"project/train.py": TRAIN, "project/helper.py": b"LR = 0.5\n", "project/out/x.ckpt": b"c",
             "project/.gitignore": b"out/\n"}
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    keys = []
    for name, data in (("code.zip", zbuf.getvalue()), ("code.tgz", tbuf.getvalue())):
        r = upload(server, [("archive", (name, data))])
        assert r.status_code == 201, r.text
        # the archive's one top folder is the code's root, and its .gitignore applies
        assert snapshot_names(server, r.json()["key"]) == [".gitignore", "helper.py", "train.py"]
        keys.append(r.json()["key"])
    assert "trained with 0.5" in run_with(server, keys[0])


def test_past_the_limits_is_a_413_beside_the_code_field(server: ServerProcess) -> None:
    r = upload(server, folder({"train.py": b"a" * 70_000}))
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["field"] in ("code", "snapshot") and "MODELYARD_MAX_SNAPSHOT" in err["message"]
    r = upload(server, folder({f"f{i}.py": b"" for i in range(21)}))
    assert r.status_code == 413 and "MODELYARD_MAX_SNAPSHOT_FILES" in r.json()["error"]["message"], r.text
    r = upload(server, [("archive", ("big.zip", b"PK\x03\x04" + b"0" * 70_000))])
    assert r.status_code == 413 and r.json()["error"]["field"] == "code", r.text


@pytest.mark.parametrize("parts, says", [
    ([("archive", ("x.zip", b"hello"))], "not a .zip or .tar.gz"),
    ([("archive", ("x.zip", b"PK\x03\x04garbage"))], "not a readable .zip"),
    ([("file", ("a.py", b"")), ("archive", ("x.zip", b"PK"))], "not both"),
    ([("other", ("a.py", b""))], "unexpected part"),
    ([], "no code"),
    ([("file", (".gitignore", b"*\n")), ("file", ("a.py", b""))], "no files to run"),
    ([("file", ("a.py", b"")), ("file", ("./a.py", b""))], "comes twice"),
])
def test_bad_uploads_are_422_naming_the_code_field(server: ServerProcess, parts: list, says: str) -> None:
    with server.client() as c:
        r = (c.post("/snapshots/upload", files=parts) if parts else
             c.post("/snapshots/upload", content=b"--b--\r\n", headers={"Content-Type": "multipart/form-data; boundary=b"}))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "code" and says in r.json()["error"]["message"], r.text


def test_not_multipart_is_a_422(server: ServerProcess) -> None:
    with server.client() as c:
        r = c.post("/snapshots/upload", content=b"{}", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "multipart/form-data" in r.json()["error"]["message"], r.text


@pytest.mark.parametrize("path, ignored", [
    ("a.log", True), ("src/a.log", True), ("keep.log", False), ("build/x.py", True), ("src/build/x.py", True),
    ("src/gen/out.py", True), ("src/gen.py", False), (".git/config", True), ("src/.git/x", True), ("ok.py", False),
])
def test_ignore_rules_judge_files_as_collect_files_does(path: str, ignored: bool, tmp_path: Path) -> None:
    from modelyard.artifacts.snapshot import collect_files

    texts = {"": "*.log\n!keep.log\nbuild/\n", "src": "gen/\n"}
    rules = IgnoreRules()
    for base, text in texts.items():
        rules.add(base, text)
        (tmp_path / base).mkdir(exist_ok=True)
        (tmp_path / base / ".gitignore").write_text(text)
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text("")
    on_disk = {f.path for f in collect_files(tmp_path)[0]}
    assert rules.ignored(path) is ignored and (path not in on_disk) is ignored


def test_paths_keep_their_non_ascii_letters_and_quotes(server: ServerProcess) -> None:
    # a browser sends a filename's '"' as %22 (HTML's form encoding), and UTF-8 as it is
    r = upload(server, folder({"données/modèle \"v2\".py": b"", "train.py": b""}))
    assert r.status_code == 201, r.text
    assert snapshot_names(server, r.json()["key"]) == ['données/modèle "v2".py', "train.py"]
