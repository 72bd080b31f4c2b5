"""A named environment: an image or a requirements file's text that jobs name with ``--environment``.

Pure data, validated as a job spec's ``image`` and ``requirements`` are. The
store keeps them per owner; the platform resolves a job's ``environment`` into
the image or requirements the job is pinned to at submit.
"""
from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelyard.jobs.spec import MAX_IMAGE_REF, MAX_REQUIREMENTS, JobSpec

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class EnvironmentSpec(BaseModel):
    """What ``environment create`` asks for: a name and exactly one of image and requirements."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=100)
    image: str | None = Field(None, max_length=MAX_IMAGE_REF)
    requirements: str | None = Field(None, max_length=MAX_REQUIREMENTS, description="the text of a requirements file")
    description: str = Field("", max_length=2000)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    # the same rules as a job's own image and requirements
    _image = field_validator("image")(JobSpec._image.__func__)  # type: ignore[attr-defined]
    _requirements = field_validator("requirements")(JobSpec._requirements.__func__)  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _exactly_one(self) -> "EnvironmentSpec":
        if (self.image is None) == (self.requirements is None):
            raise ValueError("give exactly one of image and requirements")
        return self
