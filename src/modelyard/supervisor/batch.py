"""The batch being filled, and the spool of cut batches waiting to be sent.

This module owns sequence numbers: items (logs, metrics, system samples,
events) go into the current batch; ``cut`` numbers it and writes it to
``spool/`` as the exact request body, so memory holds at most one batch however
long the server is away. When the spool's disk is full (ENOSPC) a cut batch
is held in memory instead, and sent from there: the job's lines are never
dropped for want of disk, and the log says so once per time the disk fills.
Bodies are read through ``body``, never from the path. A batch is cut when it reaches ``max_items`` (by the
thread that adds the item) or when it is ``interval`` old (by the reporter);
an event is cut at once, since a state change waits on it.
"""
from __future__ import annotations

import base64
import errno
import sys
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any

import orjson


# A metric point is five small fields (~60 bytes of JSON) while a log line may
# be megabytes: metrics get this many times ``max_items`` per batch. Fewer,
# bigger batches are what lets a million points in at >250k points/s: each
# batch costs a request, a transaction and the attempt row's update.
METRICS_PER_ITEM = 10


_NAN = float("nan")


def pack_series(points: list[tuple[str, float, int | None, int | None, float]]) -> dict[str, dict[str, Any]]:
    """A batch's metric points as the report's ``series``: per metric name, its points' four
    float64 little-endian columns (value, step, epoch, t; NaN where a step or epoch is absent),
    base64-encoded (docs/protocol.md). The server stores such a column block as it is, where
    rows of JSON numbers cost it ~2 us a point to parse and regroup."""
    if not points:
        return {}
    names = list(map(_FIELDS[0], points))
    first = names[0]
    if names.count(first) == len(names):  # the common case: one metric in the batch
        groups = {first: points}
    else:
        groups = {}
        for name, point in zip(names, points):
            groups.setdefault(name, []).append(point)
    # itemgetter columns, not zip(*points): unpacking 50,000 arguments costs ~15 ms a batch
    return {name: {"n": len(rows), "points": base64.b64encode(
        b"".join(_column(list(map(_FIELDS[i], rows))).tobytes() for i in (1, 2, 3, 4))).decode("ascii")}
        for name, rows in groups.items()}


_FIELDS = [itemgetter(i) for i in range(5)]


def _column(values: list[Any]) -> array:
    try:
        col = array("d", values)
    except TypeError:  # a None among the steps or epochs
        missing = values.count(None)
        col = array("d", [_NAN]) * len(values) if missing == len(values) else \
            array("d", [_NAN if v is None else v for v in values])
    if sys.byteorder == "big":  # pragma: no cover - the columns are little-endian on the wire
        col.byteswap()
    return col


def _body(seq: int, logs: list[tuple[float, str, str]], *, events: list[dict[str, Any]], final: bool,
          rank: int = 0) -> bytes:
    return orjson.dumps({"seq": seq, "logs": logs, "series": {}, "system": [], "events": events, "final": final,
                         **_rank(rank)})


def _rank(rank: int) -> dict[str, int]:
    """The node rank's field of a body: absent for rank 0, so a one-node job's bodies are as they always were."""
    return {"rank": rank} if rank else {}


class Batcher:
    def __init__(self, spool: Path, *, max_items: int = 5000, interval: float = 0.2, rank: int = 0) -> None:
        self.spool = spool
        self.rank = rank  # the node rank this supervisor reports for: each rank has its own seq stream
        self.max_items = max_items
        self.max_metrics = max_items * METRICS_PER_ITEM
        self.interval = interval
        self.lock = threading.Lock()  # shared with the output pump
        self.cut_event = threading.Event()  # set when a batch lands in the spool
        self._ready: deque[int] = deque()
        self._held: dict[int, bytes] = {}  # batches the full disk would not take, by seq
        self._holding = False  # the last cut went to memory (the note is given once per episode)
        self.on_enospc: Callable[[], None] = lambda: None  # must not take ``lock``
        self._seq = 0
        self._final_cut = False
        self._reset()
        self.last_cut = time.monotonic()

    def _reset(self) -> None:
        self.logs: list[tuple[float, str, str]] = []
        self.metrics: list[tuple[str, float, int | None, int | None, float]] = []
        self.system: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        self.count = 0
        self.first_at = 0.0

    # The add_* methods take the lock; the output pump holds it already and
    # appends to the lists itself, then calls added_locked (its hot path).
    def add_log(self, t: float, stream: str, text: str) -> None:
        with self.lock:
            self.logs.append((t, stream, text))
            self.added_locked()

    def add_metric(self, item: tuple[str, float, int | None, int | None, float]) -> None:
        with self.lock:
            self.metrics.append(item)
            self.added_locked()

    def add_system(self, sample: dict[str, Any]) -> None:
        with self.lock:
            self.system.append(sample)
            self.added_locked()

    def add_event(self, event: dict[str, Any]) -> None:
        """Events (the command started) change the job's state: cut at once, not ``interval`` later."""
        with self.lock:
            self.events.append(event)
            self.count += 1
            if not self._final_cut:
                self._cut_locked(final=False)

    def added_locked(self) -> None:
        self.count += 1
        if self.count == 1:
            self.first_at = time.monotonic()
        if self._full():
            self._cut_locked(final=False)

    def extend_locked(self, logs: list[tuple[float, str, str]],
                      metrics: list[tuple[str, float, int | None, int | None, float]]) -> None:
        """A whole read's lines at once (the output pump's hot path); the caller holds the lock."""
        if not logs and not metrics:
            return
        if not self.count:
            self.first_at = time.monotonic()
        self.logs.extend(logs)
        self.metrics.extend(metrics)
        self.count += len(logs) + len(metrics)
        if self._full():
            self._cut_locked(final=False)

    def _full(self) -> bool:
        return (len(self.metrics) >= self.max_metrics
                or len(self.logs) + len(self.system) + len(self.events) >= self.max_items)

    def cut_if_due(self, heartbeat_interval: float) -> None:
        """Cut the batch if it is old enough, or an empty one if a heartbeat is due."""
        now = time.monotonic()
        with self.lock:
            if self._final_cut:
                return
            if self.count and now - self.first_at >= self.interval:
                self._cut_locked(final=False)
            elif not self._ready and now - self.last_cut >= heartbeat_interval:
                self._cut_locked(final=False)

    def cut_final(self, exited_event: dict[str, Any]) -> int:
        with self.lock:
            self.events.append(exited_event)
            return self._cut_locked(final=True)

    def _cut_locked(self, *, final: bool) -> int:
        self._seq += 1
        body = orjson.dumps({
            "seq": self._seq, "logs": self.logs, "series": pack_series(self.metrics),
            "system": self.system, "events": self.events, "final": final, **_rank(self.rank),
        })
        held = not self._spool(self._seq, body)
        self._ready.append(self._seq)
        self._final_cut = self._final_cut or final
        self._reset()
        self.last_cut = time.monotonic()
        if held and not self._holding:
            # the lock is held: the note goes straight into the next batch
            self.logs.append((time.time(), "stderr", f"[modelyard] no space left on device for the spool "
                                                     f"({self.spool}): report batches are kept in memory until sent"))
            self.count, self.first_at = 1, self.last_cut
        self._holding = held
        self.cut_event.set()
        return self._seq

    def _spool(self, seq: int, body: bytes) -> bool:
        """Write batch ``seq`` to the spool; False (and held in memory) when the disk is full."""
        path = self.path(seq)
        try:
            path.write_bytes(body)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            path.unlink(missing_ok=True)  # a half-written batch must not be sent after a restart
            self._held[seq] = body
            self.on_enospc()
            return False
        return True

    def path(self, seq: int) -> Path:
        return self.spool / f"{seq:012d}.json"

    def body(self, seq: int) -> bytes:
        """Batch ``seq`` as it is to be sent: from memory if the disk would not take it, else the spool."""
        with self.lock:
            held = self._held.get(seq)
        return held if held is not None else self.path(seq).read_bytes()

    @property
    def held(self) -> int:
        """How many cut batches are in memory only."""
        with self.lock:
            return len(self._held)

    def oldest(self) -> int | None:
        with self.lock:
            return self._ready[0] if self._ready else None

    def acknowledged(self, seq: int) -> bool:
        """Drop the sent batch from the spool; True when it was the final one."""
        with self.lock:
            self._ready.popleft()
            self._held.pop(seq, None)
            last = self._final_cut and not self._ready
        self.path(seq).unlink(missing_ok=True)
        return last

    def stripped(self, seq: int, note: str) -> bytes:
        """Spooled batch ``seq`` less its lines, metrics and samples, with ``note`` instead; the
        spool keeps this body. Its number, events and ``final`` stay: the job's start and end
        still reach the server, and the sequence has no hole."""
        batch = orjson.loads(self.body(seq))
        body = _body(seq, [(time.time(), "stderr", f"[modelyard] {note}")], events=batch.get("events") or [],
                     final=bool(batch.get("final")), rank=self.rank)
        with self.lock:
            if seq in self._held:
                self._held[seq] = body
            else:
                self._spool(seq, body)
        return body

    def filler(self, seq: int, note: str) -> bytes:
        """An empty batch numbered ``seq`` with ``note``, for a number the server lacks and the spool no longer holds."""
        return _body(seq, [(time.time(), "stderr", f"[modelyard] {note}")], events=[], final=False, rank=self.rank)

    @property
    def final_cut(self) -> bool:
        return self._final_cut
