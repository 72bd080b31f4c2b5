"""Lines per second through the supervisor's output pump with metric patterns (README "Metrics from text lines").

``python -m bench.patterns`` prints JSON: for 100k lines (every line a
pytorch/examples train line, or one in ten of them among plain log lines), the
lines/s of ``OutputPump._lines`` a read at a time, with no pattern, the
``pytorch-examples`` preset and one user regex.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from modelyard.jobs.patterns import matcher
from modelyard.supervisor.output import READ_SIZE, OutputPump

N = 100_000
TRAIN = "Train Epoch: {} [{}/60000 ({:.0f}%)]\tLoss: {:.6f}"


def lines(every: int) -> list[str]:
    return [TRAIN.format(1, i * 64 % 60000, 50.0, 0.5) if i % every == 0 else f"log line {i} of something else"
            for i in range(N)]


def rate(text: list[str], patterns: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        pump = OutputPump(Path(tmp) / "log.txt", None, patterns=patterns)
        found = matcher(patterns) if patterns else None
        raw = ("\n".join(text) + "\n").encode()
        chunks, start = [], 0
        while start < len(raw):  # reads of at most READ_SIZE, cut at a newline, as the pump gets them
            end = raw.rfind(b"\n", start, start + READ_SIZE) + 1
            chunks.append(raw[start:end])
            start = end
        t = time.perf_counter()
        for chunk in chunks:
            pump._lines(chunk, chunk.decode().split("\n")[:-1], "stdout", True, None, found)
        took = time.perf_counter() - t
        pump.close()
    return N / took


def main() -> None:
    out: dict[str, object] = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                              "python": platform.python_version(), "lines": N}
    for every in (1, 10):
        text = lines(every)
        out[f"1_in_{every}_matching"] = {
            name: round(rate(text, pats)) for name, pats in
            (("no pattern", []), ("pytorch-examples", ["pytorch-examples"]),
             ("regex", [r"Loss: (?P<loss>[0-9.]+)"]))}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
