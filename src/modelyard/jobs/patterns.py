"""Metrics from the text a training script already prints (README "Metrics from text lines").

A job's ``metric_patterns`` are Python regexes with named groups, or preset names
(``PRESETS``). A line that is not a JSON metric line (jobs/metrics.py) is tried
against each pattern with ``finditer``: every named group whose text reads as a
finite number is a point named after the group; the groups ``step`` and ``epoch``
are the point's axes, not metrics; a ``name`` and ``value`` pair is "the metric
called <name>", so one pattern matched repeatedly reads a ``k: v - k: v`` list.
Axes carry forward on a stream: a line that gives only an epoch (Keras'
``Epoch 3/10``) sets the epoch of the points after it.

A line holding carriage returns is a progress bar redrawn (tqdm, Keras): each
drawing is read, and a point (name, step, epoch) drawn more than once is kept
once, at its last value. Such a bar is read when its line ends: a bar that
never prints a newline until training ends gives its points then.
"""
from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable
from typing import Any

Fields = tuple[str, float, int | None, int | None]  # name, value, step, epoch (as jobs/metrics.py)

MAX_PATTERNS = 20  # patterns of one job
MAX_PATTERN = 500  # characters of one pattern
AXES = ("step", "epoch")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_KEY = r"[A-Za-z_][\w./-]*"


class _State:
    """The axes a stream's last lines gave, for the lines after them that give none."""

    __slots__ = ("step", "epoch")

    def __init__(self) -> None:
        self.step: int | None = None
        self.epoch: int | None = None


Rule = Callable[[str, _State, list[Fields]], None]


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def _axis(text: Any) -> int | None:
    v = _number(text) if isinstance(text, str) else (float(text) if isinstance(text, (int, float)) else None)
    return int(v) if v is not None and v.is_integer() else None


def regex_rule(rx: re.Pattern[str]) -> Rule:
    """A pattern's generic reading: named groups are metrics, ``step``/``epoch`` axes, ``name``+``value`` a pair."""
    names = [n for n in rx.groupindex if n not in AXES and n not in ("name", "value")]
    pair = "name" in rx.groupindex and "value" in rx.groupindex
    has_step, has_epoch = "step" in rx.groupindex, "epoch" in rx.groupindex

    def rule(line: str, state: _State, out: list[Fields]) -> None:
        for m in rx.finditer(line):
            if has_step and (s := _axis(m.group("step"))) is not None:
                state.step = s
            if has_epoch and (e := _axis(m.group("epoch"))) is not None:
                state.epoch = e
            if pair and (v := _number(m.group("value"))) is not None and m.group("name"):
                out.append((m.group("name"), v, state.step, state.epoch))
            for n in names:
                if (v := _number(m.group(n))) is not None:
                    out.append((n, v, state.step, state.epoch))
    return rule


def _hf_trainer(line: str, state: _State, out: list[Fields]) -> None:
    """The Trainer's log dicts, ``{'loss': 0.69, 'learning_rate': 5e-05, 'epoch': 1.0}``: Python literals."""
    start, end = line.find("{'"), line.rfind("}")
    if start < 0 or end < start:
        return
    try:
        obj = ast.literal_eval(line[start:end + 1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return
    if not isinstance(obj, dict):
        return
    epoch = _axis(obj.get("epoch"))  # a fraction (0.33) is no epoch axis
    for key in AXES:
        obj.pop(key, None)
    for key, value in obj.items():
        if isinstance(key, str) and not isinstance(value, bool) and isinstance(value, (int, float)):
            if math.isfinite(value):
                out.append((key, float(value), None, epoch))


_PT_TRAIN = re.compile(rf"Train Epoch: (?P<epoch>\d+) \[(?P<seen>\d+)/(?P<total>\d+).*?\]\s+Loss: (?P<loss>{_NUM})")
_PT_TEST = re.compile(rf"Test set: Average loss: (?P<loss>{_NUM}), Accuracy: \d+/\d+ \((?P<acc>{_NUM})%\)")


def _pytorch_examples(line: str, state: _State, out: list[Fields]) -> None:
    """pytorch/examples' ``Train Epoch: 1 [640/60000 (1%)]\\tLoss: 0.293100``: the step is samples seen since
    the first epoch began ((epoch - 1) * total + seen); ``Test set: ...`` gives test_loss and test_accuracy."""
    if (m := _PT_TRAIN.search(line)) is not None:
        epoch, seen, total = int(m["epoch"]), int(m["seen"]), int(m["total"])
        state.epoch, state.step = epoch, max(epoch - 1, 0) * total + seen
        if (v := _number(m["loss"])) is not None:
            out.append(("loss", v, state.step, epoch))
    elif (m := _PT_TEST.search(line)) is not None:
        for name, text in (("test_loss", m["loss"]), ("test_accuracy", m["acc"])):
            if (v := _number(text)) is not None:
                out.append((name, v, state.step, state.epoch))


# Lightning's TQDMProgressBar: "Epoch 0: 100%|██████████| 10/10 [00:00<00:00, 50.1it/s, v_num=0, loss=0.293]";
# its RichProgressBar (the default when rich is installed): "Epoch 1/1  ━━━━━ 4/4 0:00:00 • 0:00:00 296it/s loss: 0.810"
_LIGHTNING_TQDM = re.compile(r"Epoch (?P<epoch>\d+):\s+\d+%\|[^|]*\|\s*(?P<i>\d+)/(?P<n>\d+)\s*\[(?P<post>[^\]]*)\]")
_LIGHTNING_TQDM_KV = re.compile(rf"(?P<name>{_KEY})=(?P<value>{_NUM})(?=,|$)")
_LIGHTNING_RICH = re.compile(r"Epoch (?P<epoch>\d+)/\d+\s+\S+\s+(?P<i>\d+)/(?P<n>\d+)\s(?P<post>.*)")
_LIGHTNING_RICH_KV = re.compile(rf"(?:^|\s)(?P<name>{_KEY}): (?P<value>{_NUM})(?=\s|$)")
_LIGHTNING_SKIP = frozenset({"v_num"})  # the logger's version number, not a metric


def _lightning(line: str, state: _State, out: list[Fields]) -> None:
    """Lightning's progress bar: its postfix's metrics, at step epoch * batches + batch, epoch as printed (from 0)."""
    if (m := _LIGHTNING_TQDM.search(line)) is not None:
        pairs = _LIGHTNING_TQDM_KV.finditer(m["post"].replace(" ", ""))
    elif (m := _LIGHTNING_RICH.search(line)) is not None:
        pairs = _LIGHTNING_RICH_KV.finditer(m["post"])
    else:
        return
    epoch, i, n = int(m["epoch"]), int(m["i"]), int(m["n"])
    if i == 0:
        return  # a bar reset for the next epoch, still showing the last one's metrics
    state.epoch, state.step = epoch, epoch * n + i
    for kv in pairs:
        if kv["name"] not in _LIGHTNING_SKIP and (v := _number(kv["value"])) is not None:
            out.append((kv["name"], v, state.step, epoch))


# Keras 2: "1875/1875 [====] - 5s 3ms/step - loss: 0.2931 - accuracy: 0.9152"; Keras 3:
# "469/469 ━━━━ 3s 6ms/step - accuracy: 0.8723 - loss: 0.4505"; "Epoch 3/10" before them sets the epoch.
_KERAS_EPOCH = re.compile(r"^\s*Epoch (?P<epoch>\d+)/\d+\s*$")
_KERAS_KV = re.compile(rf"(?:^|\s)- (?P<name>{_KEY}): (?P<value>{_NUM})(?=\s|$)")


def _keras(line: str, state: _State, out: list[Fields]) -> None:
    if (m := _KERAS_EPOCH.match(line)) is not None:
        state.epoch = int(m["epoch"])
        return
    for kv in _KERAS_KV.finditer(line):
        if (v := _number(kv["value"])) is not None:
            out.append((kv["name"], v, None, state.epoch))


PRESETS: dict[str, Rule] = {
    "keras": _keras,
    "hf-trainer": _hf_trainer,
    "pytorch-examples": _pytorch_examples,
    "lightning": _lightning,
}


def check_pattern(entry: Any) -> str:
    """``entry`` as a job may give it, or a ValueError naming what is wrong with it."""
    if not isinstance(entry, str) or not entry:
        raise ValueError(f"metric pattern {entry!r}: give a regex with named groups or one of {', '.join(PRESETS)}")
    if entry in PRESETS:
        return entry
    if len(entry) > MAX_PATTERN:
        raise ValueError(f"a metric pattern of {len(entry)} characters; the limit is {MAX_PATTERN}")
    try:
        rx = re.compile(entry)
    except (re.error, OverflowError, RecursionError) as e:
        raise ValueError(f"metric pattern {entry!r} is not a regex: {e}") from None
    if not rx.groupindex:
        raise ValueError(f"metric pattern {entry!r} has no named group, e.g. (?P<loss>[0-9.]+); "
                         f"or use a preset: {', '.join(PRESETS)}")
    if not set(rx.groupindex) - set(AXES):
        return entry  # axes only: sets the step or epoch of the lines after it
    if ("name" in rx.groupindex) != ("value" in rx.groupindex):
        raise ValueError(f"metric pattern {entry!r}: groups name and value go together")
    return entry


class Matcher:
    """One stream's patterns and the axes its lines carry; not shared between threads."""

    __slots__ = ("rules", "state")

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.state = _State()

    def match(self, line: str) -> list[Fields]:
        if "\r" in line:
            return self._redrawn(line)
        out: list[Fields] = []
        for rule in self.rules:
            rule(line, self.state, out)
        return out

    def _redrawn(self, line: str) -> list[Fields]:
        """A progress bar redrawn with ``\r``: every state it showed, each point once, at its last value."""
        last: dict[tuple[str, int | None, int | None], Fields] = {}
        for part in line.split("\r"):
            got: list[Fields] = []
            for rule in self.rules:
                rule(part, self.state, got)
            for f in got:
                last.pop((f[0], f[2], f[3]), None)  # re-inserted: a point's order is its last drawing's
                last[(f[0], f[2], f[3])] = f
        return list(last.values())


def matcher(patterns: list[str]) -> Matcher | None:
    """A fresh matcher for ``patterns``, or None when there are none (the pump then does nothing more).
    A pattern that no longer compiles (a job stored before a rule tightened) is left out."""
    rules: list[Rule] = []
    for p in patterns:
        if p in PRESETS:
            rules.append(PRESETS[p])
            continue
        try:
            rules.append(regex_rule(re.compile(check_pattern(p))))
        except ValueError:
            continue
    return Matcher(rules) if rules else None
