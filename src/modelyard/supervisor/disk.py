"""The run folder's disk: whether it is full, for how long, and the reserve kept for the end.

This module decides when the supervisor takes its disk as full: an ENOSPC seen
by any of its writes (spool, log.txt, output sync, log upload), or less than
``FULL_BELOW`` free on the run folder's filesystem (the job itself may fill it
with outputs the supervisor never writes). It is taken as having room again
only when a probe finds space and no ENOSPC came since the last probe. It also
owns the reserve: ``RESERVE_BYTES`` allocated at start, released when the disk
is full and the attempt must report its end, so that the final batch (and the
server's write of it, where they share the disk) still fits.
"""
from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

RESERVE_BYTES = 4 * 1024 * 1024
FULL_BELOW = 1024 * 1024


def is_enospc(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


class DiskWatch:
    def __init__(self, folder: Path, reserve: Path | None = None) -> None:
        self.folder = folder
        self.reserve = reserve
        self._lock = threading.Lock()
        self._full_since: float | None = None
        self._enospc = False  # an ENOSPC since the last probe
        self.seen = False  # any ENOSPC or full probe during the attempt

    def hold_reserve(self) -> bool:
        """Allocate the reserve (blocks really taken, not a sparse file); False if there is no room for it."""
        if self.reserve is None:
            return False
        try:
            fd = os.open(self.reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
        except OSError:
            self.reserve.unlink(missing_ok=True)
            return False
        return True

    def release_reserve(self) -> bool:
        """Give the reserve's space back; True if there was one."""
        if self.reserve is None or not self.reserve.exists():
            return False
        self.reserve.unlink(missing_ok=True)
        return True

    def enospc(self) -> None:
        """A write failed with ENOSPC (safe under any lock: takes only its own)."""
        with self._lock:
            self._enospc = self.seen = True
            if self._full_since is None:
                self._full_since = time.monotonic()

    def probe(self) -> float:
        """Look at the free space; how long the disk has been full (0.0 when it has room)."""
        try:
            free = shutil.disk_usage(self.folder).free
        except OSError:
            free = FULL_BELOW  # the folder is gone: nothing to say about its disk
        now = time.monotonic()
        with self._lock:
            if free < FULL_BELOW:
                self.seen = True
                self._full_since = self._full_since or now
            elif not self._enospc:
                self._full_since = None
            self._enospc = False
            return 0.0 if self._full_since is None else now - self._full_since
