"""Which jobs a listing asks for, and in what order: filters on parameters, tags, owner, state,
dataset, environment and creation time, and the sort key (pure parsing; db/job_query.py runs it).

Nomenclature: a *filter* is one parameter expression (``lr>=0.01``, ``opt=adam``); a *search*
is the jobs table's one-line box, filters and ``key:value`` words together
(``lr>=0.01 tag:baseline state:running owner:alice``).
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from modelyard.jobs.params import ParamValue, param_num, param_text
from modelyard.jobs.spec import check_param_name, check_tag, param_value
from modelyard.jobs.states import JobState

OPS = ("=", "!=", "<", "<=", ">", ">=")
_FILTER = re.compile(r"\s*([^=!<>\s]+)\s*(<=|>=|!=|==|=|<|>)\s*(.*?)\s*")
SORT_COLUMNS = ("id", "created", "name", "state", "owner")
# the search box's words, and the query fields they set
_WORDS = {"tag": "tags", "state": "states", "owner": "owner", "dataset": "dataset", "env": "environment",
          "environment": "environment", "since": "since", "until": "until", "sort": "sort"}


class QueryError(ValueError):
    """Bad filter, sort or time: ``field`` names the query parameter it came in."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class ParamFilter:
    name: str
    op: str  # one of OPS
    value: ParamValue

    @property
    def num(self) -> float | None:
        return param_num(self.value)

    def __str__(self) -> str:
        return f"{self.name}{self.op}{param_text(self.value)}"


@dataclass(frozen=True)
class Sort:
    column: str = "id"  # one of SORT_COLUMNS, or "param"
    param: str | None = None  # the parameter's name when column is "param"
    descending: bool = True

    def __str__(self) -> str:
        key = f"param:{self.param}" if self.column == "param" else self.column
        return ("-" if self.descending else "") + key


@dataclass(frozen=True)
class JobQuery:
    params: tuple[ParamFilter, ...] = ()
    tags: tuple[str, ...] = ()  # all must be the job's
    owner: str | None = None
    states: tuple[JobState, ...] = ()  # any of them
    dataset: str | None = None  # a name (any of its versions) or "name:version"
    environment: str | None = None
    experiment: str | None = None  # the name of its owner's MLflow experiment its run is in ("Default": none)
    since: float | None = None  # created at or after (Unix seconds)
    until: float | None = None  # created before
    text: str | None = None  # in the name
    sort: Sort = field(default_factory=Sort)


def parse_filter(text: str) -> ParamFilter:
    """``lr>=0.01``, ``opt=adam``, ``flag!=true``: ``<``, ``<=``, ``>``, ``>=`` compare numbers only."""
    m = _FILTER.fullmatch(text)
    if m is None or not m.group(3):
        raise QueryError("param", f"filter {text!r}: write NAME OP VALUE with OP one of {' '.join(OPS)}, "
                         "e.g. lr>=0.01 or opt=adam")
    name, op, raw = m.group(1), m.group(2), m.group(3)
    try:
        check_param_name(name)
    except ValueError as e:
        raise QueryError("param", f"filter {text!r}: {e}") from None
    value = param_value(raw)
    if op in ("<", "<=", ">", ">=") and param_num(value) is None:
        raise QueryError("param", f"filter {text!r}: {op} compares numbers, and {raw!r} is not one")
    return ParamFilter(name, "=" if op == "==" else op, value)


def parse_sort(text: str) -> Sort:
    """``id``, ``-id``, ``created``, ``name``, ``state``, ``owner``, ``param:lr``, ``-param:lr``."""
    key = text.strip()
    descending = key.startswith("-")
    key = key.lstrip("-+")
    if key.startswith("param:"):
        name = key.removeprefix("param:")
        try:
            check_param_name(name)
        except ValueError as e:
            raise QueryError("sort", f"sort {text!r}: {e}") from None
        return Sort("param", name, descending)
    if key not in SORT_COLUMNS:
        raise QueryError("sort", f"sort {text!r}: use one of {', '.join(SORT_COLUMNS)} or param:NAME, "
                         "with - before it for descending")
    return Sort(key, None, descending)


def parse_time(text: str, field: str) -> float:
    """Unix seconds, or an ISO date or date-time (UTC unless it names a zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise QueryError(field, f"{field} {text!r}: give an ISO date (2026-12-01, 2026-12-01T15:00Z) "
                         "or Unix seconds") from None
    return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).timestamp()


def parse_state(text: str) -> JobState:
    try:
        return JobState(text.strip().lower())
    except ValueError:
        raise QueryError("state", f"unknown state {text!r}: one of "
                         f"{', '.join(s.value for s in JobState)}") from None


def parse_tag(text: str, field: str = "tag") -> str:
    try:
        return check_tag(text)
    except ValueError as e:
        raise QueryError(field, str(e)) from None


def parse_search(text: str, base: JobQuery | None = None) -> JobQuery:
    """The jobs table's box: ``lr>=0.01 tag:baseline state:running owner:alice dataset:digits
    env:torch since:2026-12-01 sort:-param:lr``; any other word is looked for in job names."""
    q = base or JobQuery()
    try:
        words = shlex.split(text)
    except ValueError:
        raise QueryError("q", f"search {text!r}: a quote is not closed") from None
    names: list[str] = []
    for word in words:
        key, sep, value = word.partition(":")
        if sep and key in _WORDS and not _FILTER.fullmatch(key):
            q = _with_word(q, _WORDS[key], value)
        elif _FILTER.fullmatch(word):
            q = replace(q, params=(*q.params, parse_filter(word)))
        else:
            names.append(word)
    return replace(q, text=" ".join(names) or q.text)


def check_text(q: JobQuery) -> JobQuery:
    """``q``, if none of its words holds a NUL byte, which no PostgreSQL text holds (nor any name)."""
    for name, param in (("owner", "owner"), ("dataset", "dataset"), ("environment", "environment"),
                        ("experiment", "experiment"), ("text", "q")):
        if "\0" in (getattr(q, name) or ""):
            raise QueryError(param, f"{param} holds a NUL byte, which no name holds")
    return q


def _with_word(q: JobQuery, field: str, value: str) -> JobQuery:
    if field == "tags":
        return replace(q, tags=(*q.tags, parse_tag(value)))
    if field == "states":
        return replace(q, states=(*q.states, parse_state(value)))
    if field in ("since", "until"):
        return replace(q, **{field: parse_time(value, field)})
    if field == "sort":
        return replace(q, sort=parse_sort(value))
    return replace(q, **{field: value or None})

