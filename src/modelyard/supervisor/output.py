"""The job's output: read line by line, teed raw to log.txt, parsed, batched or echoed.

This module owns the per-line path, the hot loop of the supervisor (a job may
print a million metric lines), so it does as little as it can per line: one
readline, one timestamp, one raw write, one parse for stdout lines that start
with ``{``, one append. Both streams go through one lock so log.txt and the
reports keep the order lines were read in. Bytes are kept raw in log.txt;
reports get text decoded with ``backslashreplace``. Lines longer than
``MAX_LINE`` are reported in pieces (and still raw, whole, in log.txt).
"""
from __future__ import annotations

import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO

from modelyard.jobs.metrics import parse_metric_line
from modelyard.supervisor.batch import Batcher

MAX_LINE = 8 * 1024 * 1024
NOTE_PREFIX = "[modelyard] "
_MAYBE_JSON = (b"{", b" ", b"\t")  # a metric line is a JSON object, perhaps indented


class OutputPump:
    def __init__(self, log_path: Path, batcher: Batcher | None, *, echo: bool = False, tail_lines: int = 20) -> None:
        self.log = open(log_path, "ab")
        self.batcher = batcher
        self.echo = echo
        # One lock for log.txt and the batch, so both keep the order lines were read in.
        self.lock = batcher.lock if batcher is not None else threading.Lock()
        self.tail: deque[str] = deque(maxlen=tail_lines)  # for the failure message
        self.lines = 0
        self.metrics = 0
        self._threads: list[threading.Thread] = []

    def start(self, stdout: IO[bytes], stderr: IO[bytes]) -> None:
        for pipe, stream in ((stdout, "stdout"), (stderr, "stderr")):
            t = threading.Thread(target=self._read, args=(pipe, stream), name=f"modelyard-{stream}", daemon=True)
            t.start()
            self._threads.append(t)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for both streams to reach EOF; False if one is still open."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def _read(self, pipe: IO[bytes], stream: str) -> None:
        readline = pipe.readline
        parse = stream == "stdout"
        echo_to = _binary(sys.stdout if parse else sys.stderr) if self.echo else None
        try:
            while raw := readline(MAX_LINE):
                self._line(raw, stream, parse, echo_to)
        except (OSError, ValueError):
            pass  # the pipe was closed under us; EOF for our purposes
        finally:
            pipe.close()

    def _line(self, raw: bytes, stream: str, parse: bool, echo_to: IO[bytes] | None) -> None:
        t = time.time()
        point = parse_metric_line(raw, t) if parse and raw[:1] in _MAYBE_JSON else None
        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace") if point is None else ""
        with self.lock:
            self.log.write(raw)
            if echo_to is not None:
                echo_to.write(raw)
                echo_to.flush()
            self.lines += 1
            if point is None:
                self.tail.append(text)
                if self.batcher is not None:
                    self.batcher.logs.append((t, stream, text))
                    self.batcher.added_locked()
            else:
                self.metrics += 1
                if self.batcher is not None:
                    self.batcher.metrics.append((point.name, point.value, point.step, point.epoch, t))
                    self.batcher.added_locked()

    def note(self, text: str) -> None:
        """A line from the supervisor itself, on the job's stderr stream and in log.txt."""
        line = NOTE_PREFIX + text
        raw = (line + "\n").encode("utf-8", "backslashreplace")
        with self.lock:
            self.log.write(raw)
            self.tail.append(line)
            if self.echo:
                err = _binary(sys.stderr)
                err.write(raw)
                err.flush()
            if self.batcher is not None:
                self.batcher.logs.append((time.time(), "stderr", line))
                self.batcher.added_locked()

    def tail_text(self) -> str:
        with self.lock:
            return "\n".join(self.tail)

    def close(self) -> None:
        with self.lock:
            self.log.close()


class _TextSink:
    """Bytes onto a text stream that has no ``.buffer`` (a replaced sys.stdout, e.g. in a console capture)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, raw: bytes) -> int:
        return self.stream.write(raw.decode("utf-8", "backslashreplace"))

    def flush(self) -> None:
        self.stream.flush()


def _binary(stream: IO[str]) -> IO[bytes]:
    buffer = getattr(stream, "buffer", None)
    return buffer if buffer is not None else _TextSink(stream)  # type: ignore[return-value]
