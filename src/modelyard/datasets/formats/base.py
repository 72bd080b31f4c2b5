"""The writer interface every format implements: one ``SplitWriter`` per split, fed the
split's records in source order, closed once. Writers write only inside their own
split folder, so each split is its own set of files.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from modelyard.datasets.readers import Source
from modelyard.datasets.records import LabelCoder, Record
from modelyard.errors import ErrorCode, ModelyardError

SHARD_BYTES = 256 * 1024 * 1024  # TFRecord/WebDataset shard size: big enough to stream, small enough to spread


@dataclass(frozen=True)
class WriteContext:
    source: Source
    coder: LabelCoder
    labelled: bool


class SplitWriter(ABC):
    def __init__(self, folder: Path, split: str, count: int, ctx: WriteContext) -> None:
        self.folder = folder
        self.split = split
        self.count = count  # how many records this split will get
        self.ctx = ctx
        folder.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def write(self, record: Record) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Finish the files; called once after the last record (also when there was none)."""

    def abort(self) -> None:
        """Release open files after a failure; the caller deletes the folder."""


def format_error(message: str) -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, message, field="format")
