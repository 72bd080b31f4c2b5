"""A real modelyard server (uvicorn on 127.0.0.1) whose executor never runs a command.

``python fuzz_server.py PORT``: a fuzzer submits jobs whose command is arbitrary text,
and those must not run on the test machine, so every placement fails as a supervisor
that could not start does (``start_failed``): the same path a broken executor takes.
"""
from __future__ import annotations

import sys

from modelyard.executors.base import Launch
from modelyard.server.app import serve
from modelyard.store.records import Attempt


class RefusingExecutor:
    name = "local"

    def start(self, launch: Launch) -> str:
        raise RuntimeError("the fuzzing server runs no commands")

    def cancel(self, attempt: Attempt) -> None:
        return None

    def alive(self, attempt: Attempt) -> bool | None:
        return False

    def close(self) -> None:
        return None


if __name__ == "__main__":
    serve(host="127.0.0.1", port=int(sys.argv[1]), executor=RefusingExecutor())
