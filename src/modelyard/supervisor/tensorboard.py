"""TensorBoard event files under the job's output folder, read while it runs, as metric points.

A job that logs with ``torch.utils.tensorboard.SummaryWriter``, Keras' TensorBoard
callback or anything else writing ``events.out.tfevents.*`` (README "TensorBoard")
gets its scalars charted like metric lines: each scalar becomes a point named by
its tag, with the event's step and wall time, in the same batch as the JSON
metric lines. The folder (``MODELYARD_TENSORBOARD_DIR`` and the rest of the
output folder) is looked through every ``interval`` seconds; each event file
found keeps one reader that continues where its last read stopped, so a file
is read once however long it grows. The records are read by the ``tensorboard``
package's own loader (its TFRecord reader keeps a truncated last record and
reads it whole once the writer has finished it), imported only when the first
event file appears: ~0.4 s that a job without one never pays.
"""
from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

EVENT_FILE_PREFIX = "events.out.tfevents."
INTERVAL = 0.5  # seconds between looks: a few a second at most, as a chart needs no more
_SCALARS = "scalars"  # the plugin name of a scalar summary, once tensorboard's data_compat has migrated it

Point = tuple[str, float, int | None, int | None, float]  # name, value, step, epoch, time (Batcher's)


class EventWatcher:
    """Reads the event files under ``root`` incrementally; hands each read's scalar points to ``emit``."""

    def __init__(self, root: Path, emit: Callable[[list[Point]], None], *, interval: float = INTERVAL,
                 note: Callable[[str], None] = lambda _text: None) -> None:
        self.root = root
        self.emit = emit
        self.interval = interval
        self.note = note
        self.points = 0  # emitted so far
        self.looks = 0  # passes over the folder: a test's proof that the watcher sleeps between them
        self._loaders: dict[Path, Any] = {}
        self._plugins: dict[Path, dict[str, str]] = {}  # per file: tag -> plugin (metadata rides on a tag's first value)
        self._broken: set[Path] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass at a time: the last one (stop) may run while the thread's ends
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="modelyard-tensorboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop watching, after one last pass: what the job wrote before it exited is all read."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> int:
        """One pass: find new event files, read what each gained; the number of points emitted."""
        with self._lock:
            self.looks += 1
            for path in _event_files(self.root):
                if path not in self._loaders and path not in self._broken:
                    self._open(path)
            points: list[Point] = []
            for path, loader in self._loaders.items():
                try:
                    self._read(path, loader, points)
                except Exception as e:  # a corrupt file must not end the supervisor, nor the other files
                    self._broken.add(path)
                    self.note(f"TensorBoard file {path.name} could not be read further: {e}")
            for path in self._broken:
                self._loaders.pop(path, None)
            if points:
                self.points += len(points)
                self.emit(points)
            return len(points)

    def _open(self, path: Path) -> None:
        # Imported here, on the first event file: tensorboard costs ~0.4 s of import
        from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

        try:
            self._loaders[path] = EventFileLoader(str(path))
        except Exception as e:
            self._broken.add(path)
            self.note(f"TensorBoard file {path.name} could not be opened: {e}")
            return
        self._plugins[path] = {}

    def _read(self, path: Path, loader: Any, points: list[Point]) -> None:
        from tensorboard.util.tensor_util import make_ndarray

        plugins = self._plugins[path]
        for event in loader.Load():
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                if value.HasField("metadata"):
                    plugins[value.tag] = value.metadata.plugin_data.plugin_name
                # data_compat has turned a simple_value into a scalar tensor with this plugin name
                if plugins.get(value.tag) != _SCALARS or not value.HasField("tensor"):
                    continue
                array = make_ndarray(value.tensor)
                if array.size != 1:
                    continue
                number = float(array.reshape(()))
                if not math.isfinite(number):
                    continue  # as a metric line: NaN and inf are not points
                points.append((value.tag, number, int(event.step), None, float(event.wall_time)))


def _event_files(root: Path) -> Iterator[Path]:
    """The event files under ``root``, at any depth (a walk of scandir: cheap on an empty folder)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue  # removed meanwhile, or not ours to read
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.name.startswith(EVENT_FILE_PREFIX) and entry.is_file(follow_symlinks=False):
                        yield Path(entry.path)
                except OSError:
                    continue
