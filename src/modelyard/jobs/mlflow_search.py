"""MLflow's search grammar (``runs/search`` and ``experiments/search``): a filter and an order_by, parsed.

A filter is comparisons joined by AND (MLflow has no OR): ``metrics.acc > 0.9 and params.lr = '0.01'
and tags.`mlflow.user` LIKE 'al%' and attributes.status IN ('FINISHED', 'RUNNING')``. sqlparse
tokenises it, as MLflow's own ``SearchUtils`` does, so quoting (``'it''s'``, backticks,
``"double"``) reads the same; db/run_query.py turns the clauses into SQL. Bad input raises
ValueError naming what is wrong.

Nomenclature: an *entity* is what a key names: ``params``, ``metrics``, ``tags`` or ``attributes``
(a run's own fields: run_id, run_name, status, user_id, start_time, end_time).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import sqlparse
from sqlparse import tokens as T
from sqlparse.sql import Comparison, Identifier, IdentifierList, Parenthesis, Token

from modelyard.jobs.states import JobState

PARAMS, METRICS, TAGS, ATTRIBUTES = "params", "metrics", "tags", "attributes"
_ENTITIES = {
    "param": PARAMS, "params": PARAMS, "parameter": PARAMS, "parameters": PARAMS,
    "metric": METRICS, "metrics": METRICS, "tag": TAGS, "tags": TAGS,
    "attribute": ATTRIBUTES, "attributes": ATTRIBUTES, "attr": ATTRIBUTES, "run": ATTRIBUTES,
}
RUN_ATTRIBUTES = {"run_id": "run_id", "run_uuid": "run_id", "run_name": "run_name", "status": "status",
                  "user_id": "user_id", "start_time": "start_time", "created": "start_time",
                  "end_time": "end_time"}
NUMERIC_ATTRIBUTES = frozenset({"start_time", "end_time"})
EXPERIMENT_ATTRIBUTES = {"name": "name", "creation_time": "creation_time", "last_update_time": "last_update_time",
                         "experiment_id": "experiment_id"}
# a logged model's own fields (services/logged_models.py); the times compare as numbers, as a run's
MODEL_ATTRIBUTES = {"name": "name", "model_id": "model_id", "status": "status", "source_run_id": "source_run_id",
                    "model_type": "model_type", "experiment_id": "experiment_id",
                    "creation_timestamp": "creation_time", "creation_time": "creation_time",
                    "last_updated_timestamp": "last_update_time"}
NUMBER_OPS = frozenset({"=", "!=", "<", "<=", ">", ">="})
STRING_OPS = frozenset({"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"})
ALL_OPS = NUMBER_OPS | STRING_OPS


@dataclass(frozen=True)
class Clause:
    entity: str
    key: str
    op: str  # upper case: =, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN
    value: str | float | tuple[str, ...]


@dataclass(frozen=True)
class OrderKey:
    entity: str
    key: str
    ascending: bool


def parse_filter(text: str | None, *, attributes: dict[str, str] = RUN_ATTRIBUTES) -> list[Clause]:
    """The clauses of ``text`` (all must hold); an empty filter is none."""
    if not text or not text.strip():
        return []
    statements = sqlparse.parse(text)
    if len(statements) != 1:
        raise ValueError(f"the filter {text!r} must be one expression (no ';')")
    parts = [t for t in statements[0].tokens if not t.is_whitespace]
    clauses: list[Clause] = []
    i = 0
    while i < len(parts):
        if clauses or i:
            if not _is_keyword(parts[i], "AND"):
                if _is_keyword(parts[i], "OR"):
                    raise ValueError("the filter joins comparisons with AND only (MLflow's grammar has no OR)")
                raise ValueError(f"expected AND before {parts[i].value!r} in the filter")
            i += 1
        clause, i = _clause(parts, i, text, attributes)
        clauses.append(clause)
    return clauses


def _is_keyword(token: Token, word: str) -> bool:
    return token.ttype in T.Keyword and token.value.upper() == word


def _clause(parts: list[Token], i: int, text: str, attributes: dict[str, str]) -> tuple[Clause, int]:
    if i >= len(parts):
        raise ValueError(f"the filter {text!r} ends after AND")
    token = parts[i]
    if isinstance(token, Comparison):
        inner = [t for t in token.tokens if not t.is_whitespace]
        if len(inner) != 3:
            raise ValueError(f"cannot read {token.value!r}: a comparison is KEY OP VALUE")
        left, op, right = inner
        entity, key = parse_key(left.value, attributes)
        return _checked(entity, key, op.value.upper(), _value(right)), i + 1
    # sqlparse does not group ``key IN (...)`` / ``key NOT IN (...)`` into one Comparison
    if isinstance(token, Identifier) or token.ttype in T.Name:
        op_parts = []
        j = i + 1
        while j < len(parts) and parts[j].ttype in T.Keyword and parts[j].value.upper() in ("NOT", "IN"):
            op_parts.append(parts[j].value.upper())
            j += 1
        op = " ".join(op_parts)
        if op in ("IN", "NOT IN") and j < len(parts) and isinstance(parts[j], Parenthesis):
            entity, key = parse_key(token.value, attributes)
            return _checked(entity, key, op, _in_list(parts[j])), j + 1
    raise ValueError(f"cannot read {token.value!r} in the filter: expected KEY OP VALUE, OP one of "
                     "=, !=, <, <=, >, >=, LIKE, ILIKE, IN")


def _checked(entity: str, key: str, op: str, value: str | float | tuple[str, ...]) -> Clause:
    if op not in ALL_OPS:
        raise ValueError(f"unknown comparison {op!r}; use =, !=, <, <=, >, >=, LIKE, ILIKE or IN")
    numeric = entity == METRICS or (entity == ATTRIBUTES and key in NUMERIC_ATTRIBUTES | {"creation_time",
                                                                                         "last_update_time"})
    if numeric:
        if op not in NUMBER_OPS or not isinstance(value, float):
            raise ValueError(f"{entity}.{key} is a number: compare it with =, !=, <, <=, >, >= and a number")
        return Clause(entity, key, op, value)
    if op in ("IN", "NOT IN"):
        if not isinstance(value, tuple):
            raise ValueError(f"{op} takes a list: {entity}.{key} {op} ('a', 'b')")
        return Clause(entity, key, op, value)
    if isinstance(value, tuple):
        raise ValueError(f"only IN takes a list, not {op}")
    if isinstance(value, float) and op in ("LIKE", "ILIKE"):
        raise ValueError(f"{op} takes a quoted pattern, e.g. {entity}.{key} {op} 'a%'")
    if isinstance(value, float) and entity != PARAMS:
        raise ValueError(f"{entity}.{key} is text: quote the value, e.g. {entity}.{key} {op} '{_num_text(value)}'")
    if op in ("<", "<=", ">", ">=") and entity != PARAMS:
        raise ValueError(f"{entity}.{key} is text: compare it with =, !=, LIKE, ILIKE or IN")
    return Clause(entity, key, op, value)


def _num_text(x: float) -> str:
    return str(int(x)) if x.is_integer() else repr(x)


def _value(token: Token) -> str | float:
    text = token.value
    if token.ttype in T.Number or (token.ttype is None and re.fullmatch(r"[-+]?[\d.]+(e[-+]?\d+)?", text, re.I)):
        try:
            return float(text)
        except ValueError:
            pass
    if token.ttype in T.String or isinstance(token, Identifier) or token.ttype in T.Name:
        return _unquote(text)
    raise ValueError(f"cannot read the value {text!r}: quote text ('adam') and write numbers plainly (0.01)")


def _in_list(paren: Parenthesis) -> tuple[str, ...]:
    inner = [t for t in paren.tokens if not t.is_whitespace and t.ttype not in T.Punctuation]
    items: list[Token] = []
    for t in inner:
        items.extend(x for x in t.get_identifiers()) if isinstance(t, IdentifierList) else items.append(t)
    values = []
    for t in items:
        if not (t.ttype in T.String or isinstance(t, Identifier)):
            raise ValueError(f"an IN list holds quoted text, not {t.value!r}")
        values.append(_unquote(t.value))
    if not values:
        raise ValueError("an IN list is empty")
    return tuple(values)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        q = text[0]
        return text[1:-1].replace(q + q, q)
    return text


_KEY = re.compile(r"""^\s*(?:(?P<entity>[A-Za-z_]+)\.)?(?P<key>`[^`]+`|"[^"]+"|'[^']+'|[^\s`"']+)\s*$""")


def parse_key(text: str, attributes: dict[str, str] = RUN_ATTRIBUTES) -> tuple[str, str]:
    """``metrics.acc`` -> ("metrics", "acc"); ``tags.`a.b``` -> ("tags", "a.b"); ``run_name`` -> an attribute."""
    m = _KEY.match(text)
    entity_word = m.group("entity") if m else None
    if m is None or (entity_word is not None and entity_word.lower() not in _ENTITIES):
        raise ValueError(f"cannot read the key {text.strip()!r}: write params.NAME, metrics.NAME, tags.NAME or an "
                         f"attribute ({', '.join(sorted(set(attributes)))}); quote a name with dots in backticks")
    key = _unquote(m.group("key"))
    entity = _ENTITIES[entity_word.lower()] if entity_word else ATTRIBUTES
    if entity == ATTRIBUTES:
        if key not in attributes:
            raise ValueError(f"unknown attribute {key!r}; searchable: {', '.join(sorted(set(attributes)))}")
        key = attributes[key]
    elif not key:
        raise ValueError(f"{entity} needs a name: {entity}.NAME")
    return entity, key


def parse_order_by(items: list[str] | None, *, attributes: dict[str, str] = RUN_ATTRIBUTES) -> list[OrderKey]:
    """``["metrics.acc DESC", "params.lr"]`` -> order keys (ascending unless DESC)."""
    out = []
    for item in items or []:
        m = re.fullmatch(r"\s*(.+?)(?:\s+(ASC|DESC))?\s*", item, re.I)
        if m is None or not m.group(1):
            raise ValueError(f"cannot read the order_by {item!r}: KEY [ASC|DESC]")
        entity, key = parse_key(m.group(1), attributes)
        out.append(OrderKey(entity, key, (m.group(2) or "ASC").upper() == "ASC"))
    return out



# A job's state as MLflow's RunStatus names it (README "MLflow")
MLFLOW_STATUS: dict[JobState, str] = {
    JobState.QUEUED: "SCHEDULED", JobState.STARTING: "SCHEDULED",
    JobState.RUNNING: "RUNNING", JobState.STOPPING: "RUNNING",
    JobState.SUCCEEDED: "FINISHED", JobState.STOPPED: "KILLED",
    JobState.FAILED: "FAILED", JobState.TIMED_OUT: "FAILED", JobState.LOST: "FAILED",
}
# how update-run's end status ends a run with no process
STATE_OF_END: dict[str, JobState] = {"FINISHED": JobState.SUCCEEDED, "FAILED": JobState.FAILED,
                                     "KILLED": JobState.STOPPED}
