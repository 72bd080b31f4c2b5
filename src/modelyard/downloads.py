"""Fetching a job's outputs into a local folder, shared by the CLI and the SDK.

Files are written one at a time, each whole or not at all (client.py), and
never outside the folder asked for, whatever path the server lists.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from modelyard.client import Client, Progress
from modelyard.errors import ErrorCode, ModelyardError

# artifacts/keys.py's FINAL, spelt out: importing the artifacts package would load fsspec for every command
MODEL_FOLDER = "final/"


def download_outputs(client: Client, job_id: int, dest_dir: Path, *, final: bool = False,
                     attempt: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The job's outputs (its latest attempt's that has any, or ``attempt``'s; ``final``: only its model,
    written without the final/ folder) into ``dest_dir``; ``{"dir", "attempt", "files"}``.

    ``progress`` counts the bytes of all files together."""
    dest_dir = dest_dir.resolve()
    listing = client.list_outputs(job_id, attempt=attempt, final=final)
    files, chosen = listing["files"], listing.get("attempt")
    if final and not files:
        where = f"attempt {attempt}'s outputs" if attempt else "any attempt's outputs"
        raise ModelyardError(ErrorCode.NOT_FOUND, f"job {job_id} has no model: nothing under final/ in {where}")
    total = sum(f.get("size") or 0 for f in files)
    done_before = 0
    for f in files:
        local = f["path"].removeprefix(MODEL_FOLDER) if final else f["path"]
        # the attempt the listing named: a newer attempt syncing meanwhile cannot mix its files in
        client.download_output(job_id, f["path"], inside(dest_dir, local), attempt=chosen,
                               progress=_offset(progress, done_before, total))
        done_before += f.get("size") or 0
    return {"dir": str(dest_dir), "attempt": chosen, "files": files}


def inside(root: Path, relative: str) -> Path:
    """``root/relative``, refusing a path that would land outside ``root``."""
    dest = (root / relative).resolve()
    if not dest.is_relative_to(root):
        raise ModelyardError(ErrorCode.INVALID, f"output path {relative!r} points outside {root}", field="path")
    return dest


def _offset(progress: Progress | None, base: int, total: int) -> Progress | None:
    if progress is None:
        return None
    return lambda done, _total: progress(base + done, total)
