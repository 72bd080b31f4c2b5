"""Building a version locally: read the source twice (plan, then write), route each record
to its split's writer, and describe the result. Nothing here touches the artifact store.

Pass one (``Source.index``) gathers keys, labels and the source's own parts, enough
to decide every record's split; pass two streams the payloads in the same order.
Without ``--split`` the source's own parts (MNIST's train/test) are the splits, and
otherwise everything is one split named ``all``.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelyard.datasets.formats import WriteContext, open_writer
from modelyard.datasets.formats.base import SplitWriter
from modelyard.datasets.manifest import SplitInfo
from modelyard.datasets.readers import IndexEntry, Source
from modelyard.datasets.readers.base import source_error
from modelyard.datasets.records import Label, LabelCoder, classes_of, label_sort_key
from modelyard.datasets.splits import assign

WHOLE = "all"
_MAX_LABEL_KINDS = 1000  # beyond this, per-label counts would swamp the manifest (regression targets)


@dataclass(frozen=True)
class Plan:
    names: list[str]
    ratios: list[float | None]
    assignment: np.ndarray  # split index of each record, in source order
    keys: list[str]
    labels: list[Label]

    def count(self, index: int) -> int:
        return int(np.count_nonzero(self.assignment == index))


@dataclass(frozen=True)
class Built:
    splits: list[SplitInfo]
    classes: list[str] | None


def plan(entries: Sequence[IndexEntry], ratios: dict[str, float] | None, seed: int) -> Plan:
    keys = [e.key for e in entries]
    labels = [e.label for e in entries]
    if ratios:
        return Plan(list(ratios), list(ratios.values()), assign(labels, list(ratios.values()), seed), keys, labels)
    parts = list(dict.fromkeys(e.part for e in entries if e.part is not None))
    if parts:
        position = {p: i for i, p in enumerate(parts)}
        assignment = np.asarray([position[e.part] for e in entries], dtype=np.int32)  # type: ignore[index]
        return Plan(parts, [None] * len(parts), assignment, keys, labels)
    return Plan([WHOLE], [1.0], np.zeros(len(entries), dtype=np.int32), keys, labels)


def build(source: Source, ratios: dict[str, float] | None, seed: int, fmt: str, dest: Path) -> Built:
    """Write ``source`` into ``dest/<split>/...`` in ``fmt``; returns what the manifest records."""
    entries = list(source.index())
    if not entries:
        raise source_error(source.url, "it holds no records")
    _check_unique(source, entries)
    p = plan(entries, ratios, seed)
    classes = classes_of(p.labels)
    labelled = any(label is not None for label in p.labels)
    ctx = WriteContext(source, LabelCoder(classes), labelled)
    writers = [open_writer(fmt, dest / name, name, p.count(i), ctx) for i, name in enumerate(p.names)]
    try:
        _write_all(source, p, writers)
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            _quietly_abort(w)
        raise
    return Built(_split_infos(p, labelled), classes)


def _write_all(source: Source, p: Plan, writers: list[SplitWriter]) -> None:
    n = 0
    for n, record in enumerate(source.records(), start=1):
        if n > len(p.keys) or record.key != p.keys[n - 1]:
            raise source_error(source.url, "it changed while being read (records differ between two reads)")
        writers[p.assignment[n - 1]].write(record)
    if n != len(p.keys):
        raise source_error(source.url, f"it changed while being read ({len(p.keys)} records, then {n})")


def _split_infos(p: Plan, labelled: bool) -> list[SplitInfo]:
    infos = []
    for i, (name, ratio) in enumerate(zip(p.names, p.ratios)):
        members = np.flatnonzero(p.assignment == i)
        counts = None
        if labelled:
            c = Counter(p.labels[j] for j in members)
            if len(c) <= _MAX_LABEL_KINDS:
                counts = {str(k): c[k] for k in sorted(c, key=label_sort_key)}
        infos.append(SplitInfo(name, ratio, len(members), counts))
    return infos


def _check_unique(source: Source, entries: Sequence[IndexEntry]) -> None:
    seen: set[str] = set()
    for e in entries:
        if e.key in seen:
            raise source_error(source.url, f"the record key {e.key!r} occurs twice")
        seen.add(e.key)


def _quietly_abort(writer: SplitWriter) -> None:
    try:
        writer.abort()
    except Exception:  # the original failure is the one worth reporting
        pass
