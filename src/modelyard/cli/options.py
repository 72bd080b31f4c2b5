"""Pure parsing of CLI input into a job spec: ``--env K=V``, the command after ``--``, the YAML file.

No I/O beyond reading the YAML file; every failure is a ModelyardError naming the field.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.spec import REVEAL, JobSpec


def invalid(field: str | None, message: str) -> ModelyardError:
    return ModelyardError(ErrorCode.INVALID, message, field=field)


def parse_env(pairs: list[str] | None) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; a pair without ``=`` is an error."""
    env: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise invalid("env", f"{pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def shape_command(args: list[str] | None) -> list[str] | str | None:
    """One argument with whitespace is a shell string; otherwise an argv list (None when empty)."""
    if not args:
        return None
    if len(args) == 1 and any(c.isspace() for c in args[0]):
        return args[0]
    return list(args)


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


def read_requirements(path: Path) -> str:
    """A requirements file's text (``--requirements FILE``, YAML ``requirements:``): the job carries it."""
    try:
        return path.read_text()
    except OSError as e:
        raise invalid("requirements", f"cannot read {path}: {e.strerror}") from e
    except UnicodeDecodeError:
        raise invalid("requirements", f"{path} is not a UTF-8 text file") from None


def build_spec(file_data: dict[str, Any] | None, overrides: dict[str, Any]) -> JobSpec:
    """Flags over the file (``JobSpec.from_sources``); a validation error names its field."""
    try:
        return JobSpec.from_sources(file_data, overrides)
    except ValidationError as e:
        raise spec_error(e) from None


def spec_error(e: ValidationError) -> ModelyardError:
    """The first problem of a pydantic error, as ``field: message``."""
    err = e.errors()[0]
    field = ".".join(str(part) for part in err["loc"]) or None
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing" and field == "command":
        message = "missing: give it after -- (modelyard submit -- python train.py) or as `command:` in the job file"
    elif err["type"] == "extra_forbidden":
        message = "is not a job field"
    return invalid(field, message)


def spec_payload(spec: JobSpec) -> dict[str, Any]:
    """What POST /jobs takes: the spec without the client-side ``workdir``, with its inline secrets' values
    (the one dump that keeps them: the server seals them on arrival)."""
    return spec.model_dump(mode="json", exclude={"workdir"}, context=REVEAL)
