"""A real modelyard server (uvicorn on 127.0.0.1) whose executor never runs a command.

``python fuzz_server.py PORT``: a fuzzer submits jobs whose command is arbitrary text,
and those must not run on the test machine, so every placement fails as a supervisor
that could not start does (``start_failed``): the same path a broken executor takes.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from modelyard.executors.base import Found, Launch, Recovery
from modelyard.executors.capacity import Capacity, detect_capacity
from modelyard.server.app import serve
from modelyard.db.records import Attempt


class RefusingExecutor:
    name = "local"

    def __init__(self, capacity: str | None = None) -> None:
        self._capacity = detect_capacity(capacity)

    def capacity(self) -> Capacity:
        return self._capacity

    def recover(self, attempts: Sequence[Attempt]) -> list[Recovery]:
        return [Recovery(a, Found.LOST, "the fuzzing server runs no commands") for a in attempts]

    def start(self, launch: Launch) -> str:
        raise RuntimeError("the fuzzing server runs no commands")

    def cancel(self, attempt: Attempt) -> None:
        return None

    def alive(self, attempt: Attempt) -> bool | None:
        return False

    def close(self) -> None:
        return None


if __name__ == "__main__":
    serve(host="127.0.0.1", port=int(sys.argv[1]), executor=RefusingExecutor(os.environ.get("MODELYARD_CAPACITY")))
