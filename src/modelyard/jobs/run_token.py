"""The token a job's MLflow client logs with (``MLFLOW_TRACKING_TOKEN``): it speaks for its own run only.

It is derived from the attempt's report token, by HMAC over the sha256 the server stores of it, so
the server checks it without a table of its own, any server sharing the database can, and it dies
with its attempt. The job may read it (it is its own); it cannot turn it back into the report
token, which its uid never sees (DESIGN.md "Security model").
"""
from __future__ import annotations

import hashlib
import hmac

PREFIX = "myrun."


def run_token(attempt_id: int, token_hash: str) -> str:
    """``myrun.<attempt id>.<hmac>`` for the attempt whose report token hashes to ``token_hash``."""
    return f"{PREFIX}{attempt_id}.{_mac(attempt_id, token_hash)}"


def token_attempt(token: str) -> int | None:
    """The attempt id a run token names (not yet checked); None when ``token`` is no run token."""
    if not token.startswith(PREFIX):
        return None
    head, _, mac = token[len(PREFIX):].partition(".")
    if not head.isdigit() or len(head) > 18 or not mac:
        return None
    return int(head)


def check_run_token(token: str, attempt_id: int, token_hash: str) -> bool:
    return hmac.compare_digest(token.encode(), run_token(attempt_id, token_hash).encode())


def _mac(attempt_id: int, token_hash: str) -> str:
    return hmac.new(bytes.fromhex(token_hash), f"mlflow-run:{attempt_id}".encode(), hashlib.sha256).hexdigest()
