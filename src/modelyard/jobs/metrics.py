"""The metric line protocol (DESIGN.md, "The contract with a training job").

A stdout line that is a JSON object with ``"metric"`` (a string) and ``"value"``
(a finite number) is a metric point; ``"step"`` and ``"epoch"`` are optional
integers. Anything else, including a malformed metric line, is a log line.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson


class MetricPoint(NamedTuple):
    name: str
    value: float
    step: int | None
    epoch: int | None
    time: float


def parse_metric_line(line: bytes | str, now: float) -> MetricPoint | None:
    """The point on ``line``, or None when it is a plain log line."""
    fields = metric_fields(line)
    return None if fields is None else MetricPoint(*fields, now)


Fields = tuple[str, float, int | None, int | None]  # name, value, step, epoch


def metric_fields(line: bytes | str) -> Fields | None:
    """(name, value, step, epoch) of a metric line, or None for a log line."""
    return metric_fields_many((line,))[0]


def metric_fields_many(
    lines: Iterable[bytes | str], *, _loads: Any = orjson.loads, _error: Any = orjson.JSONDecodeError,
    _dict: type = dict, _str: type = str, _float: type = float, _int: type = int,
) -> list[Fields | None]:
    """``metric_fields`` of each line: the supervisor's hot path, a whole read's lines per call.

    A line without the text ``"metric"`` cannot be a metric object, and most log
    lines are rejected by that substring search alone, before any JSON parsing.
    (A key spelled with escapes, ``"\\u006detric"``, is therefore not read as one.)
    orjson accepts the surrounding whitespace and newline, and rejects NaN and
    Infinity, so a line needs no stripping and a value no finiteness check beyond
    overflow (``1e999`` parses as inf). Builtins are bound as defaults and ``type()``
    is compared by identity (a bool is not a value) because this runs per line.
    """
    out: list[Fields | None] = []
    append = out.append
    for line in lines:
        if (_NEEDLE_B if line.__class__ is bytes else _NEEDLE_S) not in line:
            append(None)
            continue
        try:
            obj = _loads(line)
        except _error:
            append(None)
            continue
        if obj.__class__ is not _dict:
            append(None)
            continue
        name = obj.get("metric")
        value = obj.get("value")
        kind = value.__class__
        if name.__class__ is not _str or not name or (kind is not _float and kind is not _int):
            append(None)
            continue
        value = _float(value)
        if value - value != 0.0:  # inf; NaN never gets past orjson
            append(None)
            continue
        step = obj.get("step")
        epoch = obj.get("epoch")
        if (step is None or step.__class__ is _int) and (epoch is None or epoch.__class__ is _int):
            append((name, value, step, epoch))  # the common case: absent or plain integers
            continue
        step = _opt_int(step)
        epoch = _opt_int(epoch)
        append(None if step is False or epoch is False else (name, value, step, epoch))  # type: ignore[arg-type]
    return out


_NEEDLE_B = b'"metric"'
_NEEDLE_S = '"metric"'


def _opt_int(v: object) -> int | None | bool:
    """An optional integer axis; False marks a value that makes the line malformed."""
    if v is None:
        return None
    if isinstance(v, bool):
        return False
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return False


def format_metric_line(name: str, value: float, step: int | None = None, epoch: int | None = None) -> str:
    obj: dict[str, object] = {"metric": name, "value": value}
    if step is not None:
        obj["step"] = int(step)
    if epoch is not None:
        obj["epoch"] = int(epoch)
    return orjson.dumps(obj).decode()
