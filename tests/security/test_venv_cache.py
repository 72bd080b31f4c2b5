"""The machine's venv cache is readable by every uid (jobs of other uids run in it), so it must
hold nothing of a job's requirements text, which may name an index with credentials; and no
uid but the server's may change a venv that other users' jobs will run."""
from __future__ import annotations

import stat
import threading
from pathlib import Path

from wheels import local_requirements, make_wheel

from modelyard.supervisor import venv

SECRET = "hunter2-index-password"


def test_the_cache_keeps_no_requirements_text_and_only_the_server_may_write_it(tmp_path: Path) -> None:
    make_wheel(tmp_path / "wheels")
    req = local_requirements(tmp_path / "wheels", "tinypkg==1.0") + f"# --extra-index-url https://u:{SECRET}@x/\n"
    root = tmp_path / "cache"
    lease = venv.acquire(root, req, python=None, size_limit=10**12, note=lambda _: None, stop=threading.Event())
    lease.release()
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert SECRET.encode() not in p.read_bytes(), f"{p} holds the requirements' secret"
    for p in [root, *lease.path.rglob("*")]:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        assert mode & stat.S_IROTH, f"{p} is not readable by other uids"
        assert not mode & (stat.S_IWOTH | stat.S_IWGRP), f"{p} is writable by other uids"
        if p.is_dir():
            assert mode & stat.S_IXOTH, f"{p} cannot be entered by other uids"
