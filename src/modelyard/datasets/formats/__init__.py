"""Formats: which ``--format`` names exist, which sources each accepts, and the writer for each.

    files       (default) the data as it came, a folder per split     -> formats.files / formats.arrays
    npz         <split>/<split>.npz with x, y (, classes)              -> formats.arrays
    lmdb        <split>/data.mdb, values as in formats.encoding       -> formats.lmdb
    tfrecord    <split>/<split>-NNNNN.tfrecord, tf.train.Example      -> formats.tfrecord
    webdataset  <split>/<split>-NNNNNN.tar shards                     -> formats.webdataset

MXNet RecordIO is refused: MXNet is retired (Apache attic, 2023).
"""
from __future__ import annotations

from pathlib import Path

from modelyard.datasets.formats.arrays import IdxWriter, NpzWriter
from modelyard.datasets.formats.base import SplitWriter, WriteContext, format_error
from modelyard.datasets.formats.files import BlobWriter, TableWriter
from modelyard.datasets.formats.lmdb import LmdbWriter
from modelyard.datasets.formats.tfrecord import TfrecordWriter
from modelyard.datasets.formats.webdataset import WebdatasetWriter

FORMATS = ("files", "npz", "lmdb", "tfrecord", "webdataset")
DEFAULT_FORMAT = "files"
_RETIRED = ("recordio", "mxnet", "rec", "mxnet-recordio", "mxrecordio")
_BY_NAME: dict[str, type[SplitWriter]] = {
    "npz": NpzWriter, "lmdb": LmdbWriter, "tfrecord": TfrecordWriter, "webdataset": WebdatasetWriter,
}
_FILES_BY_SOURCE: dict[str, type[SplitWriter]] = {
    "folder": BlobWriter, "images": BlobWriter, "idx": IdxWriter, "npz": NpzWriter,
    "csv": TableWriter, "parquet": TableWriter,
}

__all__ = ["DEFAULT_FORMAT", "FORMATS", "SplitWriter", "WriteContext", "check_format", "open_writer"]


def check_format(fmt: str | None, source_kind: str | None = None) -> str:
    """The format name to use; INVALID (field ``format``) for an unknown or unfit one."""
    name = (fmt or DEFAULT_FORMAT).strip().lower()
    if name in _RETIRED:
        raise format_error(f"MXNet RecordIO is not supported: MXNet is retired. Use one of {', '.join(FORMATS)}")
    if name not in FORMATS:
        raise format_error(f"unknown format {fmt!r}; the formats are {', '.join(FORMATS)}")
    if name == "npz" and source_kind == "folder":
        raise format_error("npz needs arrays, images or a table; a folder of files can be "
                           "formatted as files, lmdb, tfrecord or webdataset")
    return name


def open_writer(fmt: str, folder: Path, split: str, count: int, ctx: WriteContext) -> SplitWriter:
    cls = _FILES_BY_SOURCE[ctx.source.kind] if fmt == "files" else _BY_NAME[fmt]
    return cls(folder, split, count, ctx)
