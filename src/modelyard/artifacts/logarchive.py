"""An ended attempt's log kept in the artifact store, read back by line number without reading it whole.

Once an attempt has ended its lines leave the db (``log_lines``) for one file,
``log_archive_key``: one JSON array a line, ``[n, t, stream, node, text]``, in
the order and with the numbers the db gave them (every node rank's lines in
one sequence, as the API numbers them). Beside it, ``log_index_key`` holds
``(n, byte offset)`` of every ``EVERY``-th line as little-endian uint64 pairs,
so a page at any line number costs one small read of the index, one seek and
at most ``EVERY`` skipped lines: a 57 MB log's last 200 lines read in
milliseconds (README "Performance"), from a local folder or S3 alike.

The supervisor's raw log.txt is not what is kept: it lacks each line's time,
stream and node rank, holds the supervisor's late notes only in the db, and
keeps an overlong line whole where the API has it in pieces.
"""
from __future__ import annotations

import bisect
import sys
import tempfile
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from modelyard.artifacts.keys import log_archive_key, log_index_key
from modelyard.artifacts.store import ArtifactStore

EVERY = 1000
STREAM_NAMES = ("stdout", "stderr")
_SPOOL = 8 * 1024 * 1024  # an archive is built in memory up to this, on local disk past it


@dataclass(frozen=True)
class ArchivedPage:
    lines: list[dict[str, Any]]
    next_offset: int


def write_archive(store: ArtifactStore, job_id: int, attempt: int,
                  rows: Iterable[tuple[int, float, int, int, str]]) -> tuple[int, int]:
    """Store ``rows`` ``(n, t, stream, node, text)``, ordered by n, as the attempt's archive and its index;
    returns (lines, bytes). The index is written last: a reader that finds it finds the whole archive."""
    index = array("Q")
    count = pos = 0
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as out:
        for n, t, stream, node, text in rows:
            if count % EVERY == 0:
                index.extend((n, pos))
            line = orjson.dumps([n, t, stream, node, text]) + b"\n"
            out.write(line)
            pos += len(line)
            count += 1
        out.seek(0)
        store.put_stream(out, log_archive_key(job_id, attempt))
    store.put_bytes(_le(index).tobytes(), log_index_key(job_id, attempt))
    return count, pos


def has_archive(store: ArtifactStore, job_id: int, attempt: int) -> bool:
    return store.exists(log_index_key(job_id, attempt))


def read_archive(store: ArtifactStore, job_id: int, attempt: int, *, offset: int, limit: int,
                 node: int | None, total: int) -> ArchivedPage:
    """Lines numbered ``offset`` on (of rank ``node`` only, if given), as ``reports.read_logs`` pages them;
    ``total``: the attempt's line count, where a page filtered by node that is not full moves to."""
    index = _le(array("Q", store.read_bytes(log_index_key(job_id, attempt))))
    numbers, offsets = index[0::2], index[1::2]
    start = bisect.bisect_right(numbers, offset) - 1
    lines: list[dict[str, Any]] = []
    if numbers:
        with store.open(log_archive_key(job_id, attempt)) as f:
            f.seek(offsets[max(start, 0)])
            for raw in f:
                n, t, stream, rank, text = orjson.loads(raw)
                if n < offset or (node is not None and rank != node):
                    continue
                lines.append({"n": n, "t": t, "stream": STREAM_NAMES[stream], "text": text, "node": rank})
                if len(lines) >= limit:
                    break
    next_offset = lines[-1]["n"] + 1 if lines else offset
    if node is not None and len(lines) < limit:
        next_offset = max(next_offset, total)
    return ArchivedPage(lines, next_offset)


def archive_keys(job_id: int, attempt: int) -> tuple[str, str]:
    return log_archive_key(job_id, attempt), log_index_key(job_id, attempt)


def _le(a: array) -> array:  # type: ignore[type-arg]
    """The index is little-endian on disk whatever this machine is."""
    if sys.byteorder == "big":
        a.byteswap()
    return a
