"""How much a dataset source may make the server hold: the limits, and the checks that apply
them before the bytes exist (a 1 MB gzip tar unpacks to gigabytes; a 500 KB ``.npz``
declares a 400 MB array).

    upload     bytes of the tar streamed to /datasets/uploads (checked while streaming)
    unpacked   bytes the tar's members declare, in total (checked before each is written)
    ratio      how many times its own size a compressed tar may unpack to (a bomb's
               is ~1000; text ~10), once it unpacks to more than ``RATIO_FLOOR``
    members    entries in the tar (files and folders)
    array      bytes an ``.npz`` member or IDX file declares (shape x item size), checked
               from its header before a row is read
    records    rows such an array declares (each costs a planned record in memory)
    record     bytes one row of such an array declares: a row is read whole (and a
               Fortran-ordered array, whose rows are not contiguous, is one read)

Every refusal is TOO_LARGE (413) and names the limit and the variable that sets it.
"""
from __future__ import annotations

import math
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.units import format_size

GiB = 1024 ** 3
RATIO_FLOOR = 64 * 1024 ** 2  # a small upload may always unpack to this much


@dataclass(frozen=True)
class Limits:
    upload: int = 20 * GiB
    unpacked: int = 50 * GiB
    members: int = 1_000_000
    ratio: int = 100
    array: int = 4 * GiB
    records: int = 50_000_000
    record: int = 64 * 1024 ** 2


def too_large(what: str, limit: int, variable: str, *, field: str = "source", size: bool = True) -> ModelyardError:
    shown = format_size(limit) if size else f"{limit:,}"
    return ModelyardError(ErrorCode.TOO_LARGE, f"{what} is over the limit of {shown} ({variable})", field=field)


def check_array(where: str, shape: tuple[int, ...], itemsize: int, limits: Limits, *, whole: bool = False) -> None:
    """Refuse an array whose header declares more than the limits, before reading it;
    ``whole``: the reader reads it in one piece, so all of it must fit the row limit."""
    rows = shape[0] if shape else 1
    if rows > limits.records:
        raise too_large(f"{where} declares {rows:,} rows, which", limits.records, "MODELYARD_MAX_DATASET_RECORDS",
                        size=False)
    declared = math.prod(shape) * itemsize  # Python ints: a huge shape cannot overflow
    if declared > limits.array:
        raise too_large(f"{where} declares an array of {format_size(declared)}, which", limits.array,
                        "MODELYARD_MAX_ARRAY_BYTES")
    piece = declared if whole else math.prod(shape[1:]) * itemsize
    if piece > limits.record:
        what = "is Fortran-ordered (read whole) and" if whole else f"declares rows of {format_size(piece)}, which"
        raise too_large(f"{where} {what}", limits.record, "MODELYARD_MAX_RECORD_BYTES")


def unpack_tar(tar_path: Path, dest: Path, limits: Limits) -> None:
    """Unpack an uploaded tar (plain or compressed) into ``dest``, member by member, refusing
    one past the member count, the unpacked total or the ratio before writing it."""
    dest.mkdir(parents=True)
    by_ratio = max(limits.ratio * tar_path.stat().st_size, RATIO_FLOOR)
    count, total = 0, 0
    try:
        with tarfile.open(tar_path, "r|*") as tar:  # a stream: members are met, checked and written in order
            for member in tar:
                count += 1
                total += max(member.size, 0)
                if count > limits.members:
                    raise too_large("the upload's member count", limits.members, "MODELYARD_MAX_DATASET_MEMBERS",
                                    size=False)
                if total > limits.unpacked:
                    raise too_large("the upload unpacked", limits.unpacked, "MODELYARD_MAX_DATASET_UNPACKED")
                if total > by_ratio:
                    raise ModelyardError(ErrorCode.TOO_LARGE, f"the upload unpacks to more than {limits.ratio} times "
                                         f"its size, over {format_size(by_ratio)} (MODELYARD_MAX_DATASET_RATIO)",
                                         field="source")
                tar.extract(member, dest, filter="data")  # no absolute paths, no links out, no devices
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ModelyardError(ErrorCode.INVALID, f"the upload is not a readable tar: {e}", field="source") from None
    if not os.listdir(dest):
        raise ModelyardError(ErrorCode.INVALID, "the upload holds no files", field="source")
