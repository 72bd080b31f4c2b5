"""A listing of a job's outputs taken while it runs must not hide files written after it.

The server lists a running job's outputs (its page does, every refresh) while the
supervisor, another process, keeps uploading. s3fs caches directory listings and
answers ``exists``/``size``/``open`` from that cache, so a file uploaded after the
listing answered 404 for good. Another process's writes are simulated with a
separate boto3 client: nothing in this process sees them happen.
"""
from __future__ import annotations

import boto3
import pytest

from modelyard.errors import ModelyardError
from modelyard.artifacts import ArtifactStore


def test_files_written_by_another_process_after_a_listing_are_found(s3_env: dict[str, str]) -> None:
    store = ArtifactStore(f"s3://{s3_env['BUCKET']}/yard")
    store.put_bytes(b"first", "jobs/1/outputs/ckpt-0.txt")
    assert [e.path for e in store.list("jobs/1/outputs")] == ["ckpt-0.txt"]  # the job page, mid-run

    other = boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    other.put_object(Bucket=s3_env["BUCKET"], Key="yard/jobs/1/outputs/ckpt-1.txt", Body=b"second")
    other.put_object(Bucket=s3_env["BUCKET"], Key="yard/jobs/1/outputs/final/model.bin", Body=b"model")

    assert store.exists("jobs/1/outputs/ckpt-1.txt")
    assert store.size("jobs/1/outputs/final/model.bin") == 5
    assert store.read_bytes("jobs/1/outputs/ckpt-1.txt") == b"second"
    assert [e.path for e in store.list("jobs/1/outputs")] == ["ckpt-0.txt", "ckpt-1.txt", "final/model.bin"]


def test_a_file_removed_by_another_process_is_gone(s3_env: dict[str, str]) -> None:
    store = ArtifactStore(f"s3://{s3_env['BUCKET']}/yard")
    store.put_bytes(b"x", "jobs/2/outputs/a.txt")
    assert store.exists("jobs/2/outputs/a.txt")
    boto3.client("s3", endpoint_url=s3_env["AWS_ENDPOINT_URL"], region_name="us-east-1").delete_object(
        Bucket=s3_env["BUCKET"], Key="yard/jobs/2/outputs/a.txt")
    assert not store.exists("jobs/2/outputs/a.txt")
    with pytest.raises(ModelyardError):
        store.read_bytes("jobs/2/outputs/a.txt")


def test_outputs_listed_while_a_job_runs_on_s3_download_after_it(s3_env: dict[str, str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The issue's case end to end: the job page lists outputs mid-run; every file downloads after."""
    import sys

    from conftest import wait_for
    from servers import ServerProcess

    release = tmp_path / "release"
    job_code = (
        "import os, pathlib, sys, time\n"
        "out = pathlib.Path(os.environ['MODELYARD_OUTPUT_DIR'])\n"
        "(out / 'ckpt-0.txt').write_text('zero')\n"
        "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n"
        "(out / 'ckpt-1.txt').write_text('one')\n"
        "(out / 'final').mkdir(); (out / 'final' / 'model.bin').write_bytes(b'model')\n"
    )
    srv = ServerProcess(tmp_path / "home", env={
        "MODELYARD_CAPACITY": "gpus=0,cpus=2,memory=4G", "MODELYARD_STORAGE_URL": f"s3://{s3_env['BUCKET']}/yard",
    }).start()
    try:
        with srv.client() as c:
            job = c.post("/jobs", json={"spec": {"command": [sys.executable, "-c", job_code, str(release)],
                                                 "sync_interval": 0.2}}).json()
            listed = wait_for(lambda: [f["path"] for f in c.get(f"/jobs/{job['id']}/outputs").json()["files"]],
                              timeout=60, what="the first checkpoint to be listed")
            assert listed == ["ckpt-0.txt"]
            assert c.get(f"/jobs/{job['id']}/outputs/ckpt-0.txt").content == b"zero"
            release.touch()
            wait_for(lambda: c.get(f"/jobs/{job['id']}").json()["state"] == "succeeded", timeout=60,
                     what="the job to succeed")
            assert c.get(f"/jobs/{job['id']}/outputs/ckpt-1.txt").content == b"one"
            assert c.get(f"/jobs/{job['id']}/outputs/final/model.bin").content == b"model"
    finally:
        srv.stop()
