"""Turning what a person asked for into a job, shared by the CLI and the SDK.

This module owns the steps between the caller's words and ``POST /jobs``: the
spec built from a job file and overrides (every problem a ModelyardError naming
its field), the workdir snapshotted (``.gitignore`` respected, size-limited) and
uploaded, and the payload the server takes. No printing: a caller that shows
progress passes its own bars.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelyard.client import Client, Progress
from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.spec import REVEAL, JobSpec

# ``bars("upload")`` opens a progress display and gives its callback (the CLI's Rich bars)
ProgressBars = Callable[[str], AbstractContextManager["Progress | None"]]


def invalid(field: str | None, message: str) -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, message, field=field)


def shape_command(args: list[str] | None) -> list[str] | str | None:
    """One argument with whitespace is a shell string; otherwise an argv list (None when empty)."""
    if not args:
        return None
    if len(args) == 1 and any(c.isspace() for c in args[0]):
        return args[0]
    return list(args)


def read_requirements(path: Path) -> str:
    """A requirements file's text (``--requirements FILE``, YAML ``requirements:``): the job carries it."""
    try:
        return path.read_text()
    except OSError as e:
        raise invalid("requirements", f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError:
        raise invalid("requirements", f"{path} is not a UTF-8 text file") from None


def build_spec(file_data: dict[str, Any] | None, overrides: dict[str, Any]) -> JobSpec:
    """Overrides over the file (``JobSpec.from_sources``); a validation error names its field."""
    try:
        return JobSpec.from_sources(file_data, overrides)
    except ValidationError as e:
        raise spec_error(e) from None


def spec_error(e: ValidationError) -> ModelyardError:
    """The first problem of a pydantic error, as ``field: message``."""
    err = e.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or None
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing" and field == "command":
        message = "missing: give it after -- (modelyard submit -- python train.py) or as `command:` in the job file"
    elif err["type"] == "extra_forbidden":
        message = "is not a job field"
    return invalid(field, message)


def spec_payload(spec: JobSpec) -> dict[str, Any]:
    """What POST /jobs takes: the spec without the client-side ``workdir``, with its inline secrets' values
    (the one dump that keeps them: the server seals them on arrival)."""
    return spec.model_dump(mode="json", exclude={"workdir"}, context=REVEAL)


def upload_workdir(client: Client, workdir: Path, *, field: str = "workdir", bars: ProgressBars | None = None) -> str:
    """Snapshot ``workdir`` into a temp file, upload it; the snapshot's key. ``field``: the option it came from."""
    # Imported here, not at the top: the storage package pulls in fsspec, which
    # every other command would pay for at start-up.
    from modelyard.artifacts.snapshot import make_snapshot

    if not workdir.is_dir():
        raise invalid(field, f"{workdir} is not a folder")
    bars = bars or _no_bars
    max_bytes = Settings.from_env().max_snapshot_bytes
    with tempfile.TemporaryFile(prefix="modelyard-snapshot-") as tmp:
        with bars(f"snapshot {workdir}") as progress:
            make_snapshot(workdir, tmp, max_bytes, progress=progress)
        tmp.seek(0)
        with bars("upload") as progress:
            return client.upload_snapshot(tmp, progress=progress)["key"]


def _no_bars(_what: str) -> AbstractContextManager[None]:
    return nullcontext()
