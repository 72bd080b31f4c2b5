"""CSV and Parquet tables (one file, or a folder of files with the same columns),
streamed in record batches with pyarrow. The label is the ``label_column`` option,
or a column named ``label`` when there is one; a row's payload is the whole row.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelyard.datasets.readers.base import IndexEntry, Source, source_error
from modelyard.datasets.records import Record, normalise_label

DEFAULT_LABEL = "label"
_BATCH_ROWS = 4096
_CSV_BLOCK = 1 << 20


class TableSource(Source):
    payload = "row"

    def __init__(self, fs: fsspec.AbstractFileSystem, path: str, url: str, files: list[str], *,
                 label_column: str | None = None) -> None:
        super().__init__(fs, path, url)
        self.files = files  # full paths, in order
        self.schema = self._schema(files[0])
        for other in files[1:]:
            if self._schema(other).names != self.schema.names:
                raise source_error(url, f"{other} has columns {self._schema(other).names}, "
                                   f"but {files[0]} has {self.schema.names}")
        self.label_column = self._label_column(label_column)

    def _label_column(self, chosen: str | None) -> str | None:
        if chosen is None:
            return DEFAULT_LABEL if DEFAULT_LABEL in self.schema.names else None
        if chosen not in self.schema.names:
            raise source_error(self.url, f"no column {chosen!r}; the columns are {self.schema.names}", field="label_column")
        return chosen

    def _schema(self, file: str) -> pa.Schema:
        with ExitStack() as stack:
            return next(self._open_batches(file, None, stack, schema_only=True))

    def _open_batches(self, file: str, columns: list[str] | None, stack: ExitStack, *, schema_only: bool = False) -> Iterator[Any]:
        raise NotImplementedError

    def _batches(self, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        for file in self.files:
            with ExitStack() as stack:
                yield from self._open_batches(file, columns, stack)

    def index(self) -> Iterator[IndexEntry]:
        i = 0
        if self.label_column is None:
            for batch in self._batches([self.schema.names[0]]):
                for _ in range(batch.num_rows):
                    yield IndexEntry(f"{i:09d}", None, None)
                    i += 1
            return
        for batch in self._batches([self.label_column]):
            for value in batch.column(0).to_pylist():
                yield IndexEntry(f"{i:09d}", normalise_label(value), None)
                i += 1

    def records(self) -> Iterator[Record]:
        i = 0
        for batch in self._batches():
            for row in batch.to_pylist():
                label = normalise_label(row[self.label_column]) if self.label_column else None
                yield Record(f"{i:09d}", label, row)
                i += 1

    def describe(self) -> dict[str, Any]:
        return {"files": len(self.files), "label_column": self.label_column,
                "columns": {f.name: str(f.type) for f in self.schema}}


class CsvSource(TableSource):
    kind = "csv"

    def _open_batches(self, file: str, columns: list[str] | None, stack: ExitStack, *, schema_only: bool = False) -> Iterator[Any]:
        raw = stack.enter_context(self.fs.open(file, "rb", compression="infer"))
        convert = pacsv.ConvertOptions(include_columns=columns) if columns else None
        reader = stack.enter_context(pacsv.open_csv(raw, read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
                                                    convert_options=convert))
        if schema_only:
            yield reader.schema
            return
        yield from reader


class ParquetSource(TableSource):
    kind = "parquet"

    def _open_batches(self, file: str, columns: list[str] | None, stack: ExitStack, *, schema_only: bool = False) -> Iterator[Any]:
        raw = stack.enter_context(self.fs.open(file, "rb"))
        pf = stack.enter_context(pq.ParquetFile(raw))
        if schema_only:
            yield pf.schema_arrow
            return
        yield from pf.iter_batches(batch_size=_BATCH_ROWS, columns=columns)
