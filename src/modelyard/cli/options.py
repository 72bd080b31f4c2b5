"""Pure parsing of CLI input into a job spec: ``--env K=V``, the command after ``--``, the YAML file.

Building the spec from them is submission.py's, which the SDK shares.

No I/O beyond reading the YAML file; every failure is a ModelyardError naming the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modelyard.jobs.notebook import notebook_path
from modelyard.jobs.spec import check_param_name
# What the SDK shares is in submission.py; the CLI's commands import it from here too.
from modelyard.submission import build_spec, invalid, read_requirements, shape_command, spec_error, spec_payload

__all__ = ["build_spec", "invalid", "load_job_file", "notebook_args", "parse_env", "read_requirements",
           "shape_command", "spec_error", "spec_payload"]


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; a pair without ``=`` is an error."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise invalid("env", f"{pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def notebook_args(command: list[str] | None, params: list[str] | None) -> tuple[list[str] | None, list[str] | None]:
    """``nb.ipynb -p lr 0.1 -p opt adam`` (papermill's spelling, after the notebook) -> the command
    ``["nb.ipynb"]`` and the parameters ``--param`` gave with ``lr=0.1``, ``opt=adam`` added.
    Any other command is returned as it is."""
    if not command or notebook_path(command[0]) is None or len(command) == 1:
        return command, params
    rest, out = command[1:], list(params or [])
    while rest:
        if rest[0] not in ("-p", "--parameters") or len(rest) < 3:
            raise invalid("command", f"after the notebook {command[0]}, give only parameters as -p NAME VALUE "
                          f"(options go before it), not {' '.join(rest[:3])!r}")
        name, value, rest = rest[1], rest[2], rest[3:]
        try:
            check_param_name(name)  # here: a NAME holding "=" would split in the wrong place below
        except ValueError as e:
            raise invalid("params", str(e)) from None
        out.append(f"{name}={value}")
    return command[:1], out


def load_job_file(path: Path | None) -> dict[str, Any] | None:
    """The YAML job file as a mapping; a relative ``workdir`` in it is taken from the file's folder."""
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise invalid("file", f"cannot read {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise invalid("file", f"{path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise invalid("file", f"{path} must hold a mapping of job fields, not {type(data).__name__}")
    if isinstance(data.get("workdir"), str):
        data["workdir"] = str(path.parent / data["workdir"])
    if isinstance(data.get("requirements"), str):
        data["requirements"] = read_requirements(path.parent / data["requirements"])
    return data
