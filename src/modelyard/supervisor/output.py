"""The job's output: read line by line, teed raw to log.txt, parsed, batched or echoed.

This module owns the per-line path, the hot loop of the supervisor (a job may
print a million metric lines), so it works a whole read at a time: one read of
what the pipe holds, one timestamp, one raw write, one decode and split, then
per line only a substring test (and a parse for stdout lines that may be
metrics), then one lock and one extend of the batch. Per-line reads and bytes
tests cost ~4 us a line on our 2-core machines; a read at a time, ~1.6 us a
metric line and ~0.2 us a log line. Both streams go through one lock so log.txt
and the reports keep the order lines were read in. Bytes are kept raw in
log.txt; reports get text decoded with ``backslashreplace`` (decoding a run of
whole lines at once is the same as line by line: a newline is never inside a
UTF-8 sequence). Lines longer than ``MAX_LINE`` are reported in pieces (and
still raw, whole, in log.txt). A job's secret values (at least ``MIN_MASKED`` characters) are
replaced by ``***`` in whatever it prints, before log.txt, the tail or a report
sees them; with no secrets the path does one test a read, nothing more.
A job's ``metric_patterns`` (jobs/patterns.py) are tried on the lines left as log
lines, stdout and stderr both; with none, the path does one test a read.
When log.txt's disk is full (ENOSPC) the raw copy stops there, with one note;
the lines are still reported, and the server keeps them.
"""
from __future__ import annotations

import errno
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

from modelyard.jobs.metrics import metric_fields_many
from modelyard.jobs.patterns import Matcher, matcher
from modelyard.supervisor.batch import Batcher

MAX_LINE = 8 * 1024 * 1024
READ_SIZE = 256 * 1024  # at most this much per read: what a fast job printed since the last one
NOTE_PREFIX = "[modelyard] "
MASK = "***"
# A shorter value is left as it is: masking every "1" or "yes" would garble the log and break metric lines.
MIN_MASKED = 4


class OutputPump:
    def __init__(self, log_path: Path, batcher: Batcher | None, *, echo: bool = False, tail_lines: int = 20,
                 masks: Iterable[str] = (), metrics: bool = True, patterns: Sequence[str] = ()) -> None:
        self.log_path = log_path
        # False on a node rank > 0: metric points come from rank 0, and the other ranks' metric lines stay log lines
        self.parse_metrics = metrics
        # the job's metric_patterns (jobs/patterns.py), only where metrics are read at all
        self.patterns = list(patterns) if metrics else []
        self.log: IO[bytes] | None = open(log_path, "ab")
        self.on_enospc: Callable[[], None] = lambda: None  # called under ``lock``: must not take it
        self.batcher = batcher
        self.echo = echo
        # One lock for log.txt and the batch, so both keep the order lines were read in.
        self.lock = batcher.lock if batcher is not None else threading.Lock()
        self.tail: deque[str] = deque(maxlen=tail_lines)  # for the failure message
        self.lines = 0
        self.metrics = 0
        self._threads: list[threading.Thread] = []
        # longest first: a secret holding another is masked whole
        self._masks = [(m, m.encode()) for m in sorted({m for m in masks if len(m) >= MIN_MASKED}, key=len, reverse=True)]

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
        # read1: whatever the pipe holds now (up to READ_SIZE), without waiting for more
        read = getattr(pipe, "read1", pipe.read)
        parse = stream == "stdout" and self.parse_metrics
        # each stream its own matcher: the axes a line carries forward are that stream's, and no lock is needed
        found = matcher(self.patterns) if self.patterns else None
        echo_to = _binary(sys.stdout if stream == "stdout" else sys.stderr) if self.echo else None
        pending: list[bytes] = []  # the start of a line not yet ended
        pending_len = 0
        try:
            while data := read(READ_SIZE):
                end = data.rfind(b"\n") + 1
                if end == 0 or pending_len + end > MAX_LINE:  # no line ends here, or one too long ends
                    pending.append(data)
                    pending_len += len(data)
                    if end or pending_len >= MAX_LINE:
                        pending, pending_len = self._long(b"".join(pending), stream, parse, echo_to, found)
                    continue
                whole = data[:end]
                if pending:
                    whole = b"".join(pending) + whole
                    pending, pending_len = [], 0
                if end < len(data):
                    pending, pending_len = [data[end:]], len(data) - end
                self._lines(whole, whole.decode("utf-8", "backslashreplace").split("\n")[:-1], stream, parse, echo_to,
                            found)
            if pending:
                tail = b"".join(pending)
                self._lines(tail, [tail.decode("utf-8", "backslashreplace")], stream, parse, echo_to, found)
        except (OSError, ValueError):
            pass  # the pipe was closed under us; EOF for our purposes
        finally:
            pipe.close()

    def _long(self, blob: bytes, stream: str, parse: bool, echo_to: IO[bytes] | None,
              found: Matcher | None = None) -> tuple[list[bytes], int]:
        """Report what ``blob`` holds in pieces of at most MAX_LINE bytes, each line's last piece with its end;
        keep a trailing unfinished piece shorter than MAX_LINE pending (as ``readline(MAX_LINE)`` would)."""
        pos = 0
        while pos < len(blob):
            nl = blob.find(b"\n", pos, pos + MAX_LINE)
            stop = nl + 1 if nl >= 0 else pos + MAX_LINE
            if nl < 0 and stop > len(blob):
                rest = blob[pos:]
                return [rest], len(rest)
            piece = blob[pos:stop]
            self._lines(piece, [piece.decode("utf-8", "backslashreplace")], stream, parse, echo_to, found)
            pos = stop
        return [], 0

    def _lines(self, raw: bytes, lines: list[str], stream: str, parse: bool, echo_to: IO[bytes] | None,
               found: Matcher | None = None) -> None:
        """One read's worth: ``raw`` as read, ``lines`` its decoded lines (newlines not included)."""
        if self._masks:
            raw, lines = self._masked(raw, lines)
        t = time.time()
        logs: list[tuple[float, str, str]] = []
        points: list[tuple[str, float, int | None, int | None, float]] = []
        if parse:
            for line, fields in zip(lines, metric_fields_many(lines)):
                if fields is None:
                    logs.append((t, stream, line.rstrip("\r\n")))
                else:
                    points.append((*fields, t))
        else:
            logs = [(t, stream, line.rstrip("\r\n")) for line in lines]
        if found is not None:  # a matched line stays a log line: the text is kept as it was printed
            match = found.match
            for _, _, text in logs:
                points.extend([(*fields, t) for fields in match(text)])
        with self.lock:
            self._write_log(raw)
            if echo_to is not None:
                echo_to.write(raw)
                echo_to.flush()
            self.lines += len(lines)
            self.metrics += len(points)
            self.tail.extend(text for _, _, text in logs[-(self.tail.maxlen or 0):])
            if self.batcher is not None:
                self.batcher.extend_locked(logs, points)

    def _masked(self, raw: bytes, lines: list[str]) -> tuple[bytes, list[str]]:
        for text, data in self._masks:
            if data in raw:  # a value that is not valid UTF-8 alone is in neither
                raw = raw.replace(data, MASK.encode())
                lines = [line.replace(text, MASK) for line in lines]
        return raw, lines

    def note(self, text: str) -> None:
        """A line from the supervisor itself, on the job's stderr stream and in log.txt."""
        line = NOTE_PREFIX + text
        raw = (line + "\n").encode("utf-8", "backslashreplace")
        with self.lock:
            self._write_log(raw)
            self.tail.append(line)
            if self.echo:
                err = _binary(sys.stderr)
                err.write(raw)
                err.flush()
            if self.batcher is not None:
                self.batcher.logs.append((time.time(), "stderr", line))
                self.batcher.added_locked()

    def _write_log(self, raw: bytes) -> None:
        """``raw`` onto log.txt (the caller holds the lock), until its disk is full."""
        if self.log is None:
            return
        try:
            self.log.write(raw)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            self._stop_log()

    def _stop_log(self) -> None:
        log, self.log = self.log, None
        try:
            if log is not None:
                log.close()  # closes the file even when its last flush fails again
        except OSError:
            pass
        self.on_enospc()
        line = f"{NOTE_PREFIX}no space left on device: {self.log_path} stops here; the lines are still reported"
        self.tail.append(line)
        if self.batcher is not None:
            self.batcher.logs.append((time.time(), "stderr", line))
            self.batcher.added_locked()

    def tail_text(self) -> str:
        with self.lock:
            return "\n".join(self.tail)

    def close(self) -> None:
        with self.lock:
            if self.log is None:
                return
            try:
                self.log.close()
            except OSError as e:  # the last buffered bytes did not fit
                if e.errno != errno.ENOSPC:
                    raise
                self.log = None
                self._stop_log()
                return
            self.log = None


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
