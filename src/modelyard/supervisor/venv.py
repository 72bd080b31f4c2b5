"""The machine's cache of job virtualenvs: one per (requirements, interpreter), shared, bounded, LRU.

This module decides when a venv is built, reused and evicted. Every supervisor
on the machine that asks for the same requirements text with the same
interpreter (path and version) gets the same venv; two asking at once make one
build. The cache root (``MODELYARD_VENV_CACHE``, default
``$MODELYARD_HOME/cache/venvs``) holds:

    KEY/                  a complete venv; it appears only by a rename, so a half-built one is never seen
    KEY/.modelyard-size   its size in bytes, written when it was built
    KEY/.modelyard-used   touched on every use: the least recently used go first
    KEY.lock              flock, exclusive while KEY is checked, built or evicted
    KEY.use               flock, shared by each job using KEY for its whole life;
                          eviction needs it exclusive, so a running job's venv is never removed
    .tmp-KEY-*/           a build in progress (a dead supervisor's leftover is removed by the next build or sweep)
    .trash-KEY-*/         an evicted venv being deleted

A job takes KEY.use while it holds KEY.lock, and eviction takes KEY.lock before
it tries KEY.use: between them no venv is removed under a job that just got it.
Lock files are never deleted (a deleted lock file lets two holders lock two inodes).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelyard.jobs.units import format_size
from modelyard.supervisor.config import SupervisorConfig
from modelyard.supervisor.runner import StartFailed
from modelyard.supervisor.uvbuild import build_venv

SIZE_FILE = ".modelyard-size"
USED_FILE = ".modelyard-used"
LOCK_POLL = 0.1  # seconds between tries for an entry another job is building

Note = Callable[[str], None]


@dataclass
class VenvLease:
    """A cache entry a job is using; ``release`` when the attempt is over (the process's exit also does)."""

    path: Path
    key: str
    _use_fd: int | None

    def activate(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with the venv's bin/ first on PATH and VIRTUAL_ENV set, as ``activate`` would."""
        out = dict(env)
        out.pop("PYTHONHOME", None)  # it would point python at another installation's stdlib
        out["VIRTUAL_ENV"] = str(self.path)
        out["PATH"] = os.pathsep.join([str(self.path / "bin"), *filter(None, [env.get("PATH", os.defpath)])])
        return out

    def release(self) -> None:
        if self._use_fd is not None:
            os.close(self._use_fd)
            self._use_fd = None


def venv_key(requirements: str, python: str, version: str) -> str:
    h = hashlib.sha256("\0".join([python, version, requirements]).encode())
    return h.hexdigest()[:24]


def python_version(python: str) -> str:
    """The interpreter's full ``sys.version``: a rebuilt Python at the same path is another key."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        return sys.version
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True,
                             text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        raise StartFailed(f"the interpreter {python} for the job's virtualenv cannot run: {e}") from None
    return out.stdout.strip()


def acquire(root: Path, requirements: str, *, python: str | None, size_limit: int, note: Note,
            stop: threading.Event) -> VenvLease:
    """The venv for ``requirements`` from the cache, built first if it is not there; held until released."""
    python = python or sys.executable
    key = venv_key(requirements, python, python_version(python))
    _make_root(root)
    entry = root / key
    with _flock(root / f"{key}.lock", fcntl.LOCK_EX, stop=stop, waiting=lambda: note(
            f"environment: waiting for another job's build of virtualenv {key}")):
        use_fd = _lock_fd(root / f"{key}.use", fcntl.LOCK_SH)
        try:
            if entry.is_dir():
                note(f"environment: virtualenv {key} from the cache ({entry})")
            else:
                _build(root, key, python, requirements, note=note, stop=stop)
            (entry / USED_FILE).touch()
        except BaseException:
            os.close(use_fd)
            raise
    evict(root, size_limit, keep=key, note=note)
    return VenvLease(entry, key, use_fd)


def acquire_for(config: SupervisorConfig, *, note: Note, stop: threading.Event) -> VenvLease | None:
    """The venv an attempt runs in, or None when its environment names no requirements."""
    env = config.environment
    if env.requirements is None or env.image is not None:  # an image brings its own Python
        return None
    try:
        return acquire(config.venv_cache_dir, env.requirements, python=env.venv_python,
                       size_limit=env.venv_cache_size, note=note, stop=stop)
    except OSError as e:
        raise StartFailed(f"could not prepare the job's virtualenv: {e}") from None
    except StartFailed as e:
        if not stop.is_set():
            raise
        note(str(e))
        return None  # a stop, not a failure: the attempt ends stopped before its command starts


def _build(root: Path, key: str, python: str, requirements: str, *, note: Note, stop: threading.Event) -> None:
    for leftover in root.glob(f".tmp-{key}-*"):  # a build whose supervisor died; we hold the lock
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = root / f".tmp-{key}-{os.urandom(4).hex()}"
    note(f"environment: building virtualenv {key} with {python} (uv)")
    started = time.monotonic()
    try:
        build_venv(tmp, python, requirements, note=note, stop=stop)
        size = _open_to_all(tmp)
        (tmp / SIZE_FILE).write_text(str(size))
        os.rename(tmp, root / key)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    note(f"environment: built virtualenv {key} ({format_size(size)}) in {time.monotonic() - started:.1f}s")


def evict(root: Path, limit: int, *, keep: str | None = None, note: Note | None = None) -> list[str]:
    """Remove the least recently used venvs no job holds until the cache fits ``limit``; their keys."""
    _sweep(root)
    entries = sorted(_entries(root))
    total = sum(size for _, _, size in entries)
    removed: list[str] = []
    for used, key, size in entries:
        if total <= limit:
            break
        if key != keep and _try_remove(root, key):
            total -= size
            removed.append(key)
            if note is not None:
                note(f"environment cache over {format_size(limit)}: evicted virtualenv {key} ({format_size(size)})")
    return removed


def _sweep(root: Path) -> None:
    """Remove what dead supervisors left: evictions cut short, and builds no one holds the lock of."""
    for p in root.glob(".trash-*"):
        shutil.rmtree(p, ignore_errors=True)  # renamed out of the cache: nobody can be using it
    for p in root.glob(".tmp-*-*"):
        key = p.name.split("-")[1]
        try:
            with _flock(root / f"{key}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB):
                shutil.rmtree(p, ignore_errors=True)
        except BlockingIOError:
            pass  # being built right now


def _entries(root: Path) -> Iterator[tuple[float, str, int]]:
    for p in root.iterdir():
        if p.name.startswith(".") or not p.is_dir():
            continue
        try:
            size = int((p / SIZE_FILE).read_text())
            used = (p / USED_FILE).stat().st_mtime
        except (OSError, ValueError):
            continue  # being evicted by someone else right now
        yield used, p.name, size


def _try_remove(root: Path, key: str) -> bool:
    try:
        with _flock(root / f"{key}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB):
            use_fd = _lock_fd(root / f"{key}.use", fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:
                trash = root / f".trash-{key}-{os.urandom(4).hex()}"
                os.rename(root / key, trash)
            finally:
                os.close(use_fd)
    except (BlockingIOError, FileNotFoundError):
        return False  # in use, being built, or already gone
    shutil.rmtree(trash, ignore_errors=True)
    return True


@contextmanager
def _flock(path: Path, flags: int, *, waiting: Callable[[], None] | None = None,
           stop: threading.Event | None = None) -> Iterator[None]:
    """Hold an flock on ``path``. With ``waiting``: called once if another holds it, then wait for
    it, polling so that a ``stop`` ends the wait (a blocked flock would not wake for a stop)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, flags | (fcntl.LOCK_NB if waiting else 0))
        except BlockingIOError:
            if waiting is None:
                raise
            waiting()
            _wait_for_lock(fd, flags, stop or threading.Event())
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def _wait_for_lock(fd: int, flags: int, stop: threading.Event) -> None:
    while True:
        try:
            fcntl.flock(fd, flags | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if stop.wait(LOCK_POLL):
                raise StartFailed("stopped while waiting for the environment") from None


def _lock_fd(path: Path, flags: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, flags)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    # a job running as another uid (MODELYARD_JOB_UIDS) must reach and read the venvs
    os.chmod(root, 0o755)


def _open_to_all(tree: Path) -> int:
    """Make ``tree`` readable (and its executables runnable) by every uid, and writable only by
    its owner, whatever the umask; its size in bytes."""
    total = 0
    for dirpath, _dirs, files in os.walk(tree):
        os.chmod(dirpath, (os.stat(dirpath).st_mode | 0o755) & ~0o022)
        for name in files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            total += st.st_size
            if not os.path.islink(p):
                extra = 0o444 | (0o111 if st.st_mode & 0o100 else 0)
                os.chmod(p, (st.st_mode | extra) & ~0o022)
    return total
