"""Dataset names and references: ``NAME`` (the latest version) or ``NAME:VERSION``.

A name becomes a folder in the artifact store and in every job's cache, so it
is limited to ``[A-Za-z0-9][A-Za-z0-9._-]{0,99}``; a version is the first 12 hex
digits of the content hash (a unique prefix of at least 4 digits also picks one).
"""
from __future__ import annotations

import re
from typing import NamedTuple

from modelyard.errors import ErrorCode, ModelyardError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
VERSION_RE = re.compile(r"[0-9a-f]{4,64}")
VERSION_LEN = 12


class Ref(NamedTuple):
    name: str
    version: str | None  # None: the latest

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


def validate_name(name: str, *, field: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        bad = sorted({c for c in str(name) if not re.fullmatch(r"[A-Za-z0-9._-]", c)})
        why = f"it contains {''.join(bad)!r}" if bad else "it must start with a letter or digit and be 1-100 characters"
        raise ModelyardError(
            ErrorCode.INVALID,
            f"bad dataset name {name!r}: {why}; use letters, digits, '.', '_' and '-'",
            field=field,
        )
    return name


def parse_ref(ref: str, *, field: str = "dataset") -> Ref:
    """``NAME`` or ``NAME:VERSION``; raises INVALID naming ``field`` otherwise."""
    name, sep, version = str(ref).strip().partition(":")
    validate_name(name, field=field)
    if not sep:
        return Ref(name, None)
    version = version.lower()
    if not VERSION_RE.fullmatch(version):
        raise ModelyardError(
            ErrorCode.INVALID,
            f"bad dataset version {version!r} in {ref!r}: expected hex digits, e.g. {name}:3f2a9c01b7d4",
            field=field,
        )
    return Ref(name, version)
