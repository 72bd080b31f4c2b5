"""The job spec: what a user asks to run, validated, from CLI flags or a YAML file.

A spec is pure data. ``JobSpec.from_sources`` merges a YAML file with flags
(flags win). Validation errors name the field and the reason.
"""
from __future__ import annotations

import re
import shlex
from typing import Any

from pydantic import (
    BaseModel, ConfigDict, Field, SecretStr, SerializationInfo, field_serializer, field_validator, model_validator,
)

from modelyard.jobs.units import parse_duration, parse_size

DEFAULT_MAX_RUNTIME = 72 * 3600.0
DEFAULT_SYNC_INTERVAL = 600.0
ENV_RESERVED_PREFIX = "MODELYARD_"
MAX_IMAGE_REF = 500
MAX_REQUIREMENTS = 256 * 1024
# an image reference as Podman and Docker take it: [registry[:port]/]path[:tag][@digest]
_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
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
    name: str | None = Field(None, max_length=200)
    workdir: str | None = Field(None, description="folder snapshotted at submit (client side)")
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict)
    priority: int = Field(0, ge=-1000, le=1000)
    max_runtime: float = Field(DEFAULT_MAX_RUNTIME, gt=0, description="seconds")
    sync_interval: float = Field(DEFAULT_SYNC_INTERVAL, gt=0, description="seconds")
    retries: int = Field(0, ge=0, le=100)
    webhooks: list[str] = Field(default_factory=list)
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

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, str):
            if not v.strip():
                raise ValueError("the command is empty")
        elif not v or not v[0]:
            raise ValueError("the command is empty")
        return v

    @field_validator("max_runtime", "sync_interval", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if isinstance(v, str):
            return parse_duration(v)
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"bad environment variable name {key!r}")
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
    def _secrets_not_in_env(self) -> "JobSpec":
        both = sorted(set(self.secrets) & set(self.env))
        if both:
            raise ValueError(f"{both[0]} is in both env and secrets; give it once")
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
    def _webhooks(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {url!r} is not an http(s) URL")
        return v

    @model_validator(mode="after")
    def _default_name(self) -> "JobSpec":
        if not self.name:
            self.name = self.display_command()[:60]
        return self

    def argv(self) -> list[str]:
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
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
            elif key == "secrets":
                file_secrets, flag_secrets = parse_secrets(data.get("secrets") or {}), parse_secrets(value)
                both_maps = isinstance(file_secrets, dict) and isinstance(flag_secrets, dict)
                data["secrets"] = {**file_secrets, **flag_secrets} if both_maps else flag_secrets
            else:
                data[key] = value
        if res:
            data["resources"] = res
        return cls.model_validate(data)


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
