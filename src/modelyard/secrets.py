"""The server's secret key, and sealing secret values with it (README "Secrets").

A secret is stored only as a Fernet token (AES-128-CBC with an HMAC-SHA256, from
the ``cryptography`` library): the database never holds a value in clear. The
key is ``MODELYARD_SECRET_KEY`` when set (one key, or several comma-separated:
the first seals, every one opens, so a key can be rotated), else
``$MODELYARD_HOME/secret.key``, created (mode 0600) on the server's first start.
Every server of a cluster sharing one database must be given the same key.

Nomenclature: to *seal* is to encrypt a value for the database, to *open* is to
decrypt it, which happens only when an attempt is launched.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError

KEY_FILE = "secret.key"


class SecretBox:
    """Seals and opens secret values with the server's key(s)."""

    def __init__(self, keys: list[bytes]) -> None:
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except ValueError:
            raise ModelyardError(
                ErrorCode.INVALID, "MODELYARD_SECRET_KEY must be Fernet keys (32 url-safe base64 bytes), "
                "comma-separated; make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'", field="MODELYARD_SECRET_KEY") from None

    @classmethod
    def for_settings(cls, settings: Settings) -> "SecretBox":
        """The box of ``MODELYARD_SECRET_KEY``, or of the home's key file (made on first use)."""
        if settings.secret_key:
            return cls([k.strip().encode() for k in settings.secret_key.split(",") if k.strip()])
        return cls([_key_file(settings.home / KEY_FILE)])

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, token: str, *, what: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ModelyardError(
                ErrorCode.CONFLICT, f"{what} cannot be decrypted: the server's secret key is not the one it was "
                "stored with (MODELYARD_SECRET_KEY or $MODELYARD_HOME/secret.key)") from None

    def seal_map(self, values: Mapping[str, str]) -> str | None:
        """Several values as one token (a job's inline secrets); None when there are none."""
        return self.seal(orjson.dumps(dict(values)).decode()) if values else None

    def open_map(self, token: str | None, *, what: str) -> dict[str, str]:
        return dict(orjson.loads(self.open(token, what=what))) if token else {}


def _key_file(path: Path) -> bytes:
    """The key in ``path``; made there, readable by this user only, if there is none yet.
    O_EXCL: two servers starting at once on one home agree on the first one written."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return key
