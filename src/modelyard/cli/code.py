"""Sending code: a folder snapshotted (``.gitignore`` respected, size-limited) and uploaded, for submit and clone."""
from __future__ import annotations

import tempfile
from pathlib import Path

from modelyard.cli.options import invalid
from modelyard.cli.output import byte_progress
from modelyard.client import Client
from modelyard.config import Settings


def upload_workdir(client: Client, workdir: Path, *, show_progress: bool = True, field: str = "workdir") -> str:
    """Snapshot ``workdir`` into a temp file, upload it; the snapshot's key. ``field``: the option it came from."""
    # Imported here, not at the top: the storage package pulls in fsspec, which
    # every other command would pay for at start-up.
    from modelyard.artifacts.snapshot import make_snapshot

    if not workdir.is_dir():
        raise invalid(field, f"{workdir} is not a folder")
    max_bytes = Settings.from_env().max_snapshot_bytes
    with tempfile.TemporaryFile(prefix="modelyard-snapshot-") as tmp:
        with byte_progress(f"snapshot {workdir}", enabled=show_progress) as progress:
            make_snapshot(workdir, tmp, max_bytes, progress=progress)
        tmp.seek(0)
        with byte_progress("upload", enabled=show_progress) as progress:
            return client.upload_snapshot(tmp, progress=progress)["key"]
