"""Periodic upload of the job's output folder to the artifact store.

This module owns when outputs are synced: every ``interval`` seconds while the
job runs, and once more at the end (``final``), never two syncs at once. The
fingerprint state lives here, so each sync uploads only what changed. A
symlink that leads out of the output folder is never followed (the job could
point one at the server's token): it is skipped, and the log says so once.
A sync that fails for want of space (ENOSPC) sets ``disk_full`` (cleared by
the next sync that succeeds) and calls ``on_enospc``: the attempt then ends
failed, since its outputs cannot all be kept.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from modelyard.artifacts import ArtifactStore, Fingerprint, SyncResult
from modelyard.supervisor.disk import is_enospc


class OutputSyncer:
    def __init__(self, store: ArtifactStore, local_dir: Path, prefix: str, interval: float, note: Callable[[str], None]) -> None:
        self.store = store
        self.local_dir = local_dir
        self.prefix = prefix
        self.interval = interval
        self.note = note
        self.state: dict[str, Fingerprint] = {}
        self.syncs = 0
        self.disk_full = False  # the last sync failed with no space left
        self.on_enospc: Callable[[], None] = lambda: None
        self._noted: set[str] = set()  # skipped links already named in the log
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelyard-sync", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sync_once()

    def sync_once(self) -> SyncResult | None:
        """One sync; a failure becomes a note in the job's log, and the next sync retries."""
        with self._lock:
            try:
                result = self.store.sync_dir(self.local_dir, self.prefix, self.state)
            except Exception as e:  # the loop boundary: storage may be away for a while
                if is_enospc(e):
                    self.on_enospc()
                if not self.disk_full:  # once per time the disk fills, not every interval
                    self.note(f"output sync to {self.prefix} failed, will retry: {e}")
                self.disk_full = is_enospc(e)
                return None
            self.disk_full = False
            self.syncs += 1
            for link in result.skipped_links:
                if link not in self._noted:
                    self._noted.add(link)
                    self.note(f"skipped output link {link}: points outside the output folder")
            return result

    def stop(self) -> None:
        """End the periodic syncs, without a last one."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def final(self) -> SyncResult | None:
        self.stop()
        return self.sync_once()
