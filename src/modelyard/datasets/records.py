"""What a reader yields and every writer consumes: one ``Record`` per example.

Nomenclature:
    record   one example of a dataset: ``key`` (unique within the source), ``label``
             (or None) and ``payload``
    payload  a ``Blob`` (a file's bytes, opened lazily so large files stream), a numpy
             array (one row of an IDX or npz array) or a ``dict`` (one table row)
    label    an int, float or str; numpy scalars and NaN are normalised here so that
             labels compare, sort, group and serialise the same everywhere
    classes  the sorted distinct labels when labels are strings (an image folder's
             subfolder names); formats that need numbers write the class index
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Union

import numpy as np

Label = Union[int, float, str, None]
PayloadKind = Literal["file", "array", "row"]


@dataclass(frozen=True, slots=True)
class Blob:
    """A file's contents: ``name`` is its relative path, kept by the ``files`` format."""

    name: str
    size: int
    opener: Callable[[], IO[bytes]] = field(repr=False)

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> Blob:
        return cls(name, len(data), lambda: io.BytesIO(data))

    def open(self) -> IO[bytes]:
        return self.opener()

    def read(self) -> bytes:
        with self.opener() as f:
            return f.read()

    @property
    def suffix(self) -> str:
        """The extension without the dot, lower case ("png"); "" when there is none."""
        base = self.name.rsplit("/", 1)[-1]
        return base.rsplit(".", 1)[-1].lower() if "." in base.lstrip(".") else ""


Payload = Union[Blob, np.ndarray, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    label: Label
    payload: Payload


def normalise_label(value: Any) -> Label:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def label_sort_key(label: Label) -> tuple[int, Any]:
    """A total order over mixed labels (None first, then numbers, then strings)."""
    if label is None:
        return (0, 0)
    if isinstance(label, str):
        return (2, label)
    return (1, label)


def classes_of(labels: Iterable[Label]) -> list[str] | None:
    """The class names when the labels are strings; None for numeric or absent labels."""
    names = {lab for lab in labels if isinstance(lab, str)}
    return sorted(names) if names else None


class LabelCoder:
    """Labels as the numbers formats store: the class index for string labels, else as is."""

    def __init__(self, classes: list[str] | None) -> None:
        self.classes = classes
        self._index = {name: i for i, name in enumerate(classes or [])}

    def code(self, label: Label) -> int | float | None:
        if isinstance(label, str):
            return self._index[label]
        return label

    def name(self, label: Label) -> str | None:
        return label if isinstance(label, str) else None
