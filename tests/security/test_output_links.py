"""A job's output folder holds symlinks to the server's token, to /etc/passwd and to /etc:
output sync never follows them out, so none of those files can be downloaded as an output,
and the job's log says what was skipped. A link to a file inside the folder is synced as that file."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from servers import ServerProcess

JOB = """
import os, sys
out = os.environ["MODELYARD_OUTPUT_DIR"]
os.symlink("/etc/passwd", os.path.join(out, "ckpt"))
os.symlink(sys.argv[1], os.path.join(out, "token"))
os.symlink("/etc", os.path.join(out, "etc"))
os.makedirs(os.path.join(out, "sub"))
os.symlink("../../..", os.path.join(out, "sub", "up"))
open(os.path.join(out, "model.txt"), "w").write("weights")
os.symlink("model.txt", os.path.join(out, "latest.txt"))
print("wrote links", flush=True)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "home", env={"MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G"}).start()
    yield srv
    srv.stop()


def test_output_links_out_of_the_folder_are_never_synced(server: ServerProcess, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    token = (server.home / "token").read_text()
    passwd = Path("/etc/passwd").read_bytes()
    with server.client() as c:
        r = c.post("/jobs", json={"spec": {"command": [sys.executable, str(script), str(server.home / "token")]}})
        assert r.status_code == 201, r.text
        job_id = r.json()["id"]
        wait_for(lambda: c.get(f"/jobs/{job_id}").json()["state"] in ("succeeded", "failed"), timeout=60)
        assert c.get(f"/jobs/{job_id}").json()["state"] == "succeeded"
        files = {f["path"] for f in c.get(f"/jobs/{job_id}/outputs").json()["files"]}
        assert files == {"model.txt", "latest.txt"}
        assert c.get(f"/jobs/{job_id}/outputs/latest.txt").content == b"weights"
        for path in ("ckpt", "token", "etc/passwd", "etc/hostname", "sub/up/etc/passwd"):
            r = c.get(f"/jobs/{job_id}/outputs/{path}")
            assert r.status_code == 404, (path, r.status_code)
            assert passwd not in r.content and token.encode() not in r.content
        logs = [l["text"] for l in c.get(f"/jobs/{job_id}/logs", params={"limit": 1000}).json()["lines"]]
    notes = [t for t in logs if t.startswith("[modelyard] skipped output link")]
    assert "[modelyard] skipped output link ckpt -> /etc/passwd: points outside the output folder" in notes
    assert any(t.startswith(f"[modelyard] skipped output link token -> {server.home}") for t in notes)
    assert any("skipped output link etc -> /etc" in t for t in notes)
    assert any("skipped output link sub/up -> ../../.." in t for t in notes)
    # nothing of it anywhere in the artifact store either
    for f in (server.home / "artifacts").rglob("*"):
        if f.is_file():
            assert f.read_bytes() != passwd
