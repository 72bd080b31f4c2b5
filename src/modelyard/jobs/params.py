"""What a job's parameters do to its command: ``MODELYARD_PARAMS`` and ``{NAME}`` substitution.

One place decides, so that ``run --local`` (cli/submit.py) and every executor (through
scheduler/launch.py) run the same command with the same variables.

A ``{NAME}`` naming one of the job's parameters becomes its text form (``0.01``, ``3``,
``true``, ``adam``); ``{{NAME}}`` is the literal text ``{NAME}``. Every other brace stays as
written: a shell's ``${HOME}``, a Python f-string, JSON in a command are not ours to change.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

ParamValue = str | int | float | bool
PARAMS_VARIABLE = "MODELYARD_PARAMS"
# a reference is a parameter name (spec.py's _PARAM_NAME) in one or two pairs of braces
_REFERENCE = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_.\-]{0,99})\}\}|\{([A-Za-z_][A-Za-z0-9_.\-]{0,99})\}")


def param_text(value: ParamValue) -> str:
    """How a value reads in a command, in a table and in a filter: JSON's form for booleans and numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else repr(value)


def param_num(value: ParamValue) -> float | None:
    """The number a value reads as, for sorting and comparing (a boolean is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def substitute(text: str, params: Mapping[str, ParamValue]) -> str:
    def one(m: re.Match[str]) -> str:
        escaped, name = m.group(1), m.group(2)
        if escaped is not None:
            return "{" + escaped + "}" if escaped in params else m.group(0)
        return param_text(params[name]) if name in params else m.group(0)

    return _REFERENCE.sub(one, text) if params else text


def command_argv(argv: list[str], params: Mapping[str, ParamValue]) -> list[str]:
    """``argv`` (a spec's: ``["/bin/sh", "-c", CMD]`` for a shell string) with each item's references
    substituted."""
    return [substitute(a, params) for a in argv]


def params_env(params: Mapping[str, ParamValue]) -> dict[str, str]:
    """The variable every job gets: its parameters as a JSON object (``{}`` when it has none)."""
    return {PARAMS_VARIABLE: orjson.dumps(dict(params)).decode()}
