"""Sending code for submit and clone: the shared snapshot and upload (submission.py), with progress bars."""
from __future__ import annotations

from pathlib import Path

from modelyard.cli.output import byte_progress
from modelyard.client import Client
from modelyard import submission


def upload_workdir(client: Client, workdir: Path, *, show_progress: bool = True, field: str = "workdir") -> str:
    """Snapshot ``workdir``, upload it; the snapshot's key. ``field``: the option it came from."""
    return submission.upload_workdir(client, workdir, field=field,
                                     bars=lambda what: byte_progress(what, enabled=show_progress))
