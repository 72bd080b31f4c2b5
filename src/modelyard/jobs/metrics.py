"""The metric line protocol (DESIGN.md, "The contract with a training job").

A stdout line that is a JSON object with ``"metric"`` (a string) and ``"value"``
(a finite number) is a metric point; ``"step"`` and ``"epoch"`` are optional
integers. Anything else, including a malformed metric line, is a log line.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import orjson


class MetricPoint(NamedTuple):
    name: str
    value: float
    step: int | None
    epoch: int | None
    time: float


def parse_metric_line(line: bytes | str, now: float) -> MetricPoint | None:
    """The point on ``line``, or None when it is a plain log line."""
    stripped = line.strip()
    if not stripped or stripped[0] not in (b"{"[0], "{"):
        return None
    try:
        obj = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    name = obj.get("metric")
    value = obj.get("value")
    if not isinstance(name, str) or not name or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    step = _opt_int(obj.get("step"))
    epoch = _opt_int(obj.get("epoch"))
    if step is False or epoch is False:
        return None
    return MetricPoint(name, value, step, epoch, now)


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
