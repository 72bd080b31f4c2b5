"""The ``files`` format (the default): the data kept in the kind it came in, a folder per
split. Files (a plain folder, an image folder) are copied as they are, byte for byte,
to ``<split>/<relative path>``; CSV and Parquet tables become ``<split>/data.csv`` or
``<split>/data.parquet``. Array sources have their own writers (IDX, npz) in ``arrays``.
"""
from __future__ import annotations

import shutil
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelyard.datasets.formats.base import SplitWriter
from modelyard.datasets.readers.tables import TableSource
from modelyard.datasets.records import Blob, Record

_ROWS_PER_WRITE = 4096


class BlobWriter(SplitWriter):
    def write(self, record: Record) -> None:
        blob = record.payload
        assert isinstance(blob, Blob)
        target = self.folder / blob.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with blob.open() as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 4 * 1024 * 1024)

    def close(self) -> None:
        pass


class TableWriter(SplitWriter):
    """Buffers a few thousand rows at a time and writes them with the source's schema."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        source = self.ctx.source
        assert isinstance(source, TableSource)
        self.schema = source.schema
        self.rows: list[dict[str, Any]] = []
        self.writer = self._open(source.kind)

    def _open(self, kind: str) -> Any:
        if kind == "csv":
            return pacsv.CSVWriter(str(self.folder / "data.csv"), self.schema)
        return pq.ParquetWriter(str(self.folder / "data.parquet"), self.schema)

    def write(self, record: Record) -> None:
        assert isinstance(record.payload, dict)
        self.rows.append(record.payload)
        if len(self.rows) >= _ROWS_PER_WRITE:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self._flush()
        self.writer.close()

    def abort(self) -> None:
        self.writer.close()
