"""Which server the CLI talks to: ``Client.from_env`` (MODELYARD_URL, else the embedded server)."""
from __future__ import annotations

from modelyard.client import Client


def get_client() -> Client:
    return Client.from_env()
