"""The job spec: what a user asks to run, validated, from CLI flags or a YAML file.

A spec is pure data. ``JobSpec.from_sources`` merges a YAML file with flags
(flags win). Validation errors name the field and the reason.

Bounds (the ``MAX_*`` constants, README "Limits") hold at submit: a spec read back
from the store is validated with ``context=STORED`` and skips them, so a job kept
before a bound was lowered still loads.
"""
from __future__ import annotations

import re
import shlex
from typing import Any

from pydantic import (
    BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, ValidationInfo, field_serializer, field_validator,
    model_validator,
)

from modelyard.jobs.console import Console
from modelyard.jobs.nodes import check_label, parse_labels
from modelyard.jobs.notebook import notebook_path
from modelyard.jobs.patterns import MAX_PATTERNS, check_pattern
from modelyard.jobs.units import parse_duration, parse_size

DEFAULT_MAX_RUNTIME = 72 * 3600.0
DEFAULT_SYNC_INTERVAL = 600.0
ENV_RESERVED_PREFIX = "MODELYARD_"
MAX_IMAGE_REF = 500
MAX_REQUIREMENTS = 256 * 1024
# an image reference as Podman and Docker take it: [registry[:port]/]path[:tag][@digest]
_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
# What a submit may ask for. A spec is kept whole in the job's row and sent back in every
# listing, so these keep one job from making every listing of its owner megabytes long.
MAX_NAME = 200  # characters of a job's name
MAX_ENV_BYTES = 64 * 1024  # all of `env`, names and values, UTF-8
MAX_ENV_VALUE_BYTES = 32 * 1024  # one value of `env`
MAX_COMMAND_BYTES = 64 * 1024  # the command, all its arguments together, UTF-8
MAX_COMMAND_ARGS = 4096  # arguments of an argv command
MAX_WEBHOOKS = 10  # webhook URLs of one job
MAX_WEBHOOK_URL = 2000  # characters of one webhook URL
MAX_NODES = 64  # nodes of one multi-node job
MAX_NPROC_PER_NODE = 64  # processes per node
MAX_NODE_LABELS = 20  # labels a job may require
MAX_PARAMS = 200  # parameters of one job
MAX_PARAM_VALUE = 1000  # characters of one parameter's value
MAX_TAGS = 50  # tags of one job
MAX_METRIC_PATTERNS = MAX_PATTERNS  # metric patterns of one job (each at most MAX_PATTERN characters)
MAX_EXPERIMENT_NAME = 500  # characters of an MLflow experiment's name (MLflow's limit)
# what the MLflow client reads to choose an experiment; in a job's env they choose its run's (README "MLflow")
EXPERIMENT_NAME_VAR, EXPERIMENT_ID_VAR = "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"
# A parameter's name is what ``{NAME}`` in the command and a filter ``NAME>=x`` name.
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+\-]{0,63}")
# What happens to a job that a user can be told of (a notice, an email, a webhook).
JOB_EVENTS = ("started", "succeeded", "failed", "stopped", "timed_out", "lost")
END_EVENTS = JOB_EVENTS[1:]
STORED = {"stored": True}  # validation context of a spec read back from the store: no bounds
# the shape of a dataset reference (datasets/names.py says which names exist; the platform resolves it)
_DATASET_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}(:[0-9a-fA-F]{4,64})?")
# A secret becomes an environment variable of its name: the shell's rules, and not one of ours.
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MASK = "***"  # how every secret value is shown back (API, pages, webhooks, logs)
MAX_SECRET_VALUE = 64 * 1024
# model_dump(context=REVEAL) keeps inline secret values: only the client, sending its own spec, asks for it
REVEAL = {"reveal_secrets": True}


class Resources(BaseModel):
    """What a job holds while it runs. ``memory`` is in bytes (0: no reservation)."""

    model_config = ConfigDict(extra="forbid")

    gpus: int = Field(0, ge=0, description="whole GPUs")
    cpus: float = Field(1.0, ge=0, description="CPU cores")
    memory: int = Field(0, ge=0, description="bytes of memory")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_size(v)
        return v

    def fits_in(self, other: "Resources") -> bool:
        return self.gpus <= other.gpus and self.cpus <= other.cpus + 1e-9 and self.memory <= other.memory

    def __add__(self, other: "Resources") -> "Resources":
        return Resources(gpus=self.gpus + other.gpus, cpus=self.cpus + other.cpus, memory=self.memory + other.memory)

    def __sub__(self, other: "Resources") -> "Resources":
        return Resources.model_construct(
            gpus=self.gpus - other.gpus, cpus=self.cpus - other.cpus, memory=self.memory - other.memory
        )


class JobSpec(BaseModel):
    """A job as submitted. ``command`` is an argv list, or a string run by the shell."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] | str
    name: str | None = Field(None, max_length=MAX_NAME)
    workdir: str | None = Field(None, description="folder snapshotted at submit (client side)")
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict)
    priority: int = Field(0, ge=-1000, le=1000)
    max_runtime: float = Field(DEFAULT_MAX_RUNTIME, gt=0, description="seconds")
    sync_interval: float = Field(DEFAULT_SYNC_INTERVAL, gt=0, description="seconds")
    retries: int = Field(0, ge=0, le=100)
    webhooks: list[str] = Field(default_factory=list, description=f"at most {MAX_WEBHOOKS} http(s) URLs")
    # as the user gave it: NAME (the latest at submit) or NAME:VERSION; the job row keeps the pinned version
    dataset: str | None = Field(None, max_length=200)
    # What the command runs in (README "Environments"): a container image, a uv virtualenv
    # built from a requirements file's text, or a named environment holding one of those.
    # None of them: the server's own Python, as a bare process.
    image: str | None = Field(None, max_length=MAX_IMAGE_REF)
    requirements: str | None = Field(None, max_length=MAX_REQUIREMENTS, description="the text of a requirements file")
    environment: str | None = Field(None, max_length=100, description="a named environment")
    # NAME -> its value given inline, or None: the submitting user's stored secret NAME (README "Secrets").
    # A dump shows every value as MASK unless asked with context=REVEAL; the server stores inline values
    # encrypted apart from the spec, so the spec it keeps holds MASK for them.
    secrets: dict[str, SecretStr | None] = Field(default_factory=dict, max_length=100)
    # Beyond one node (README "Running on a cluster"): ``resources`` is what each node holds; the
    # command runs once per node, with the variables torchrun expects (jobs/launch.py TorchEnv).
    nodes: int = Field(1, ge=1, le=MAX_NODES, description="nodes, each holding `resources`")
    nproc_per_node: int | None = Field(None, ge=1, le=MAX_NPROC_PER_NODE,
                                       description="processes per node (LOCAL_WORLD_SIZE); None: its GPUs, or 1")
    # only nodes with every one of these labels (a Ray node's custom resources, MODELYARD_NODE_LABELS)
    node_labels: dict[str, str] = Field(default_factory=dict, max_length=MAX_NODE_LABELS)
    # Structured parameters (``--param NAME=VALUE``, YAML ``params:``): recorded per job, given to the
    # command as MODELYARD_PARAMS (JSON), and substituted where the command names ``{NAME}``.
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, description=f"at most {MAX_TAGS}")
    # which of JOB_EVENTS the job's webhooks are sent for; empty: its end (any of END_EVENTS)
    webhook_events: list[str] = Field(default_factory=list)
    # metrics read from the text the command prints (README "Metrics from text lines", jobs/patterns.py):
    # regexes with named groups, or preset names (keras, hf-trainer, pytorch-examples, lightning)
    metric_patterns: list[str] = Field(default_factory=list, description=f"at most {MAX_METRIC_PATTERNS}")
    # set: a JupyterLab console (jobs/console.py), which only POST /api/v1/consoles creates
    console: Console | None = None
    # the owner's MLflow experiment (by name) its run starts in, created at submit if missing; None: Default
    # unless env names one (MLFLOW_EXPERIMENT_NAME or MLFLOW_EXPERIMENT_ID), or its script does (README "MLflow")
    experiment: str | None = None

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | str, info: ValidationInfo) -> list[str] | str:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("the command is empty")
        elif not v or not v[0]:
            raise ValueError("the command is empty")
        if not _stored(info):
            _check_command(v)
        return v

    @field_validator("max_runtime", "sync_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for key in v:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"bad environment variable name {key!r}")
        if not _stored(info):
            _check_env(v)
        return v

    @field_validator("secrets", mode="before")
    @classmethod
    def _secrets_shape(cls, v: Any) -> Any:
        return parse_secrets(v) if isinstance(v, (list, tuple)) else v

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: dict[str, SecretStr | None]) -> dict[str, SecretStr | None]:
        for name, value in v.items():
            check_secret_name(name)
            if value is not None:
                check_secret_value(value.get_secret_value(), name)
        return v

    @field_serializer("secrets")
    def _dump_secrets(self, v: dict[str, SecretStr | None], info: SerializationInfo) -> dict[str, str | None]:
        reveal = bool(info.context and info.context.get("reveal_secrets"))
        return {k: None if s is None else s.get_secret_value() if reveal else MASK for k, s in v.items()}

    @model_validator(mode="after")
    def _console_one_node(self) -> "JobSpec":
        if self.console is not None and self.nodes != 1:
            raise ValueError("a notebook console runs on one node; --nodes must be 1")
        return self

    @model_validator(mode="after")
    def _secrets_not_in_env(self) -> "JobSpec":
        both = sorted(set(self.secrets) & set(self.env))
        if both:
            raise ValueError(f"{both[0]} is in both env and secrets; give it once")
        return self

    @field_validator("node_labels", mode="before")
    @classmethod
    def _node_labels_shape(cls, v: Any) -> Any:
        return parse_labels(v) if isinstance(v, (list, tuple, str)) else v

    @field_validator("node_labels")
    @classmethod
    def _node_labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            check_label(key, value)
        return v

    @field_validator("params", mode="before")
    @classmethod
    def _params_shape(cls, v: Any) -> Any:
        return parse_params(v) if isinstance(v, (list, tuple)) else v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not _stored(info) and len(v) > MAX_PARAMS:
            raise ValueError(f"{len(v)} parameters; the limit is {MAX_PARAMS} a job")
        for name, value in v.items():
            check_param_name(name)
            if isinstance(value, str) and len(value) > MAX_PARAM_VALUE:
                raise ValueError(f"parameter {name}: the value is over {MAX_PARAM_VALUE} characters")
        return v

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str], info: ValidationInfo) -> list[str]:
        out = list(dict.fromkeys(check_tag(t) for t in v))  # once each, in the order given
        if not _stored(info) and len(out) > MAX_TAGS:
            raise ValueError(f"{len(out)} tags; the limit is {MAX_TAGS} a job")
        return out

    @field_validator("webhook_events")
    @classmethod
    def _webhook_events(cls, v: list[str]) -> list[str]:
        for event in v:
            if event not in JOB_EVENTS:
                raise ValueError(f"webhook event {event!r}: use one of {', '.join(JOB_EVENTS)}")
        return list(dict.fromkeys(v))

    @field_validator("metric_patterns")
    @classmethod
    def _metric_patterns(cls, v: list[str], info: ValidationInfo) -> list[str]:
        out = list(dict.fromkeys(v))
        if not _stored(info):
            if len(out) > MAX_METRIC_PATTERNS:
                raise ValueError(f"{len(out)} metric patterns; the limit is {MAX_METRIC_PATTERNS} a job")
            for p in out:
                check_pattern(p)
        return out

    @property
    def local_world_size(self) -> int:
        """Processes per node: as asked, else one per GPU, else one."""
        return self.nproc_per_node or max(self.resources.gpus, 1)

    @field_validator("experiment")
    @classmethod
    def _experiment(cls, v: str | None) -> str | None:
        return None if v is None else check_experiment_name(v)

    @model_validator(mode="after")
    def _one_experiment(self, info: ValidationInfo) -> "JobSpec":
        if _stored(info):  # a job kept before these checks still loads
            return self
        named = self.env.get(EXPERIMENT_NAME_VAR)
        if named is not None:
            check_experiment_name(named, f"env {EXPERIMENT_NAME_VAR}")
        if named is not None and self.experiment is not None and named != self.experiment:
            raise ValueError(f"experiment {self.experiment!r} and env {EXPERIMENT_NAME_VAR} {named!r} name "
                             "different experiments; give one")
        given_id = self.env.get(EXPERIMENT_ID_VAR)
        if given_id is not None and (not (given_id.isascii() and given_id.isdigit()) or len(given_id) > 18):
            raise ValueError(f"env {EXPERIMENT_ID_VAR} is an experiment's id (digits), not {given_id[:40]!r}")
        return self

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not _DATASET_REF.fullmatch(v.strip()):
            raise ValueError(f"{v!r} is not a dataset reference: use NAME or NAME:VERSION")
        return v.strip()

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not _IMAGE_REF.fullmatch(v.strip()):
            raise ValueError(f"{v!r} is not an image reference like pytorch/pytorch:2.4.0 or localhost/train:1")
        return v.strip()

    @field_validator("requirements")
    @classmethod
    def _requirements(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if "\0" in v:
            raise ValueError("the requirements hold a NUL byte")
        return v

    @model_validator(mode="after")
    def _one_environment(self) -> "JobSpec":
        given = [k for k in ("image", "requirements", "environment") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give one of image, requirements and environment, not {' and '.join(given)}")
        return self

    @field_validator("webhooks")
    @classmethod
    def _webhooks(cls, v: list[str], info: ValidationInfo) -> list[str]:
        if not _stored(info):
            if len(v) > MAX_WEBHOOKS:
                raise ValueError(f"{len(v)} webhooks; the limit is {MAX_WEBHOOKS} a job")
            for url in v:
                if len(url) > MAX_WEBHOOK_URL:
                    raise ValueError(f"a webhook URL of {len(url)} characters; the limit is {MAX_WEBHOOK_URL}")
        for url in v:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {url!r} is not an http(s) URL")
        return v

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any, info: ValidationInfo) -> Any:
        if not _stored(info):
            _check_text(data, "spec")
        return data

    @model_validator(mode="after")
    def _default_name(self) -> "JobSpec":
        if not self.name:
            self.name = self.display_command()[:60]
        return self

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            notebook = notebook_path(self.command)  # the web form's "train.ipynb" is a notebook, not a shell command
            return [notebook] if notebook else ["/bin/sh", "-c", self.command]
        return list(self.command)

    def display_command(self) -> str:
        return self.command if isinstance(self.command, str) else shlex.join(self.command)

    @classmethod
    def from_sources(cls, file_data: dict[str, Any] | None, overrides: dict[str, Any]) -> "JobSpec":
        """Merge a YAML document (already parsed) with flags; a flag set to None is absent."""
        data: dict[str, Any] = dict(file_data or {})
        res = dict(data.get("resources") or {})
        for key in ("gpus", "cpus", "memory"):
            if key in data:
                res[key] = data.pop(key)
        for key, value in overrides.items():
            if value is None:
                continue
            if key in ("gpus", "cpus", "memory"):
                res[key] = value
            elif key == "env":
                data["env"] = {**(data.get("env") or {}), **value}
            elif key == "params":
                try:
                    file_params, flag_params = parse_params(data.get("params") or {}), parse_params(value)
                except ValueError:  # left as given: validation names the field and the bad item
                    file_params, flag_params = {}, value
                both_maps = isinstance(file_params, dict) and isinstance(flag_params, dict)
                data["params"] = {**file_params, **flag_params} if both_maps else flag_params
            elif key in ("tags", "metric_patterns"):
                data[key] = [*(data.get(key) or []), *value]
            elif key == "secrets":
                file_secrets, flag_secrets = parse_secrets(data.get("secrets") or {}), parse_secrets(value)
                both_maps = isinstance(file_secrets, dict) and isinstance(flag_secrets, dict)
                data["secrets"] = {**file_secrets, **flag_secrets} if both_maps else flag_secrets
            else:
                data[key] = value
        if res:
            data["resources"] = res
        return cls.model_validate(data)


def check_param_name(name: str) -> str:
    if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
        raise ValueError(f"parameter name {name!r}: use letters, digits, _, . and -, starting with a letter or _ "
                         "(at most 100)")
    return name


def check_experiment_name(name: str, what: str = "experiment") -> str:
    if not name.strip():
        raise ValueError(f"{what}: an experiment's name is not empty (leave it out for Default)")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise ValueError(f"{what}: an experiment's name is at most {MAX_EXPERIMENT_NAME} characters, not {len(name)}")
    if "\0" in name:  # no PostgreSQL text column holds one
        raise ValueError(f"{what}: an experiment's name holds a NUL byte")
    return name


def check_tag(tag: str) -> str:
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise ValueError(f"tag {tag!r}: use letters, digits and _ . : / + -, starting with a letter or digit "
                         "(at most 64)")
    return tag


def parse_params(v: Any) -> Any:
    """``["lr=0.01", "opt=adam"]`` (CLI ``--param``) -> ``{"lr": 0.01, "opt": "adam"}``: a value that reads
    as a JSON number or boolean is kept as one. A mapping is returned as it is."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(item, str) for item in v):
        return v
    out: dict[str, Any] = {}
    for item in v:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"parameter {item!r}: give it as NAME=VALUE")
        out[name.strip()] = param_value(value)
    return out


def param_value(text: str) -> str | int | float | bool:
    """How a parameter given as text is kept: ``3`` an int, ``0.01`` and ``1e-3`` floats, ``true``/``false``
    booleans, anything else the text itself."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        return text
    return f if f == f and f not in (float("inf"), float("-inf")) else text


def check_secret_name(name: str) -> str:
    """A secret's name is an environment variable's: letters, digits and ``_``, not ``MODELYARD_...``."""
    if not isinstance(name, str) or not _SECRET_NAME.fullmatch(name):
        raise ValueError(f"secret name {name!r}: use letters, digits and _, not starting with a digit (at most 100)")
    if name.upper().startswith(ENV_RESERVED_PREFIX):
        raise ValueError(f"secret name {name!r}: names starting with {ENV_RESERVED_PREFIX} are the platform's")
    return name


def check_secret_value(value: str, name: str) -> str:
    if not value:
        raise ValueError(f"secret {name}: the value is empty")
    if "\0" in value:
        raise ValueError(f"secret {name}: the value holds a NUL byte, which no environment variable can")
    if len(value.encode()) > MAX_SECRET_VALUE:
        raise ValueError(f"secret {name}: the value is over {MAX_SECRET_VALUE // 1024} KiB")
    return value


def parse_secrets(v: Any) -> Any:
    """``["A", "B=x=y"]`` (CLI ``--secret``, YAML) -> ``{"A": None, "B": "x=y"}``: NAME alone is the
    user's stored secret, NAME=VALUE a value given inline. A mapping is returned as it is."""
    if not isinstance(v, (list, tuple)) or not all(isinstance(item, str) for item in v):
        return v  # validation then says what it expected
    out: dict[str, Any] = {}
    for item in v:
        name, sep, value = item.partition("=")
        out[name.strip()] = value if sep else None
    return out


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _check_text(data: Any, where: str) -> None:
    """Every string can be stored as UTF-8: JSON may carry a lone surrogate ("\\ud800"), which
    no database column or JSON encoder takes."""
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where} is not valid text (it holds a lone UTF-16 surrogate)") from None
    elif isinstance(data, dict):
        for key, value in data.items():
            _check_text(key, f"{where} (a key)")
            _check_text(value, f"{where}.{key}")
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            _check_text(value, f"{where}.{i}")


def _check_command(command: list[str] | str) -> None:
    args = [command] if isinstance(command, str) else command
    if not isinstance(command, str) and len(args) > MAX_COMMAND_ARGS:
        raise ValueError(f"the command has {len(args)} arguments; the limit is {MAX_COMMAND_ARGS}")
    size = sum(_utf8_len(a) for a in args)
    if size > MAX_COMMAND_BYTES:
        raise ValueError(f"the command is {size} bytes; the limit is {MAX_COMMAND_BYTES} bytes")
    if any("\0" in a for a in args):
        # exec cannot pass a NUL byte: refused here, not when the job starts
        raise ValueError("the command contains a NUL byte")


def _check_env(env: dict[str, str]) -> None:
    total = 0
    for key, value in env.items():
        if "\0" in value:
            raise ValueError(f"the value of {key} contains a NUL byte")
        size = _utf8_len(value)
        if size > MAX_ENV_VALUE_BYTES:
            raise ValueError(f"the value of {key} is {size} bytes; the limit is {MAX_ENV_VALUE_BYTES} bytes a value")
        total += _utf8_len(key) + size
    if total > MAX_ENV_BYTES:
        raise ValueError(f"the environment is {total} bytes; the limit is {MAX_ENV_BYTES} bytes in all")
