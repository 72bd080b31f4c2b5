"""Where an attempt runs: one slice of one node per node rank.

A job asks for ``nodes`` nodes (1 by default), each holding its ``resources``
(GPUs, CPUs, memory per node), on nodes whose labels match its
``node_labels``. The policy answers with one ``NodeSlice`` per node rank: the
node's id and the GPU and core indices it holds there. Rank 0 is the node whose
supervisor reports metrics and outputs (README "Running on a cluster").

A label is ``KEY=VALUE``: a Ray node's custom resources become labels (a
resource ``gpu_h100`` is the label ``gpu_h100=1``), and an operator may give the
local machine labels with ``MODELYARD_NODE_LABELS``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

# the one node of the local executor
LOCAL_NODE = "local"
LABEL_KEY = re.compile(r"^[A-Za-z0-9_.\-/:]{1,100}$")
MAX_LABEL_VALUE = 200


@dataclass(frozen=True, slots=True)
class NodeSlice:
    """What one node rank of an attempt holds on its node."""

    node: str
    gpus: tuple[int, ...] = ()
    cores: tuple[int, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "gpus": list(self.gpus), "cores": list(self.cores)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NodeSlice":
        return cls(str(d["node"]), tuple(int(g) for g in d.get("gpus", ())),
                   tuple(int(c) for c in d.get("cores", ())))


def format_slices(slices: Sequence[NodeSlice]) -> str:
    return orjson.dumps([s.to_dict() for s in slices]).decode() if slices else ""


def parse_slices(text: str | None) -> tuple[NodeSlice, ...]:
    return tuple(NodeSlice.from_dict(d) for d in orjson.loads(text)) if text else ()


def check_label(key: str, value: str) -> None:
    if not LABEL_KEY.match(key):
        raise ValueError(f"label key {key!r} must be 1-100 letters, digits or . _ - / :")
    if len(value) > MAX_LABEL_VALUE or "," in value or "=" in value:
        raise ValueError(f"label value {value!r} of {key} must be at most {MAX_LABEL_VALUE} characters, "
                         f"without ',' or '='")


def parse_labels(items: Iterable[str] | str | None) -> dict[str, str]:
    """``KEY=VALUE`` items (or one comma-separated string of them) as a mapping; ValueError names the bad one."""
    if items is None:
        return {}
    if isinstance(items, str):
        items = [p for p in (s.strip() for s in items.split(",")) if p]
    labels: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"label {item!r} must be a KEY=VALUE string")
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ValueError(f"label {item!r} must be KEY=VALUE")
        check_label(key, value)
        if key in labels and labels[key] != value:
            raise ValueError(f"label {key} given twice, as {labels[key]!r} and {value!r}")
        labels[key] = value
    return labels


def format_labels(labels: Mapping[str, str]) -> str:
    """Stored form (``jobs.node_labels``): sorted ``k=v`` joined by commas; '' for none."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def matches(node_labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(node_labels.get(k) == v for k, v in wanted.items())
