"""Whether this server isolates its users' jobs, and the file modes that make it so.

This module decides two things (README, "Security model"):

- On a shared server (``MODELYARD_JOB_UIDS``), what of ``MODELYARD_HOME`` a
  job's uid may reach: traverse the home, ``runs/`` and ``cache/`` (0711: by
  name, not by listing); read the dataset cache (root's, so read-only); nothing
  else -- the database, the token, the artifacts, supervisor configs, spools
  and logs are root's alone (0600/0700).
- Secure by default: without that isolation every job runs as the server's
  own user and can read all of the above, so a second, non-admin user is
  refused unless an admin says ``--no-isolation`` knowingly.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from urllib.parse import urlparse

from modelyard.config import JOB_UIDS_FIELD, Settings
from modelyard.errors import ErrorCode, ModelyardError

TRAVERSABLE = ("runs", "cache")  # reached by jobs, by name only


def protect_home(settings: Settings) -> None:
    """Make ``MODELYARD_HOME`` safe to share with jobs of other uids (only with MODELYARD_JOB_UIDS)."""
    if settings.job_uids is None:
        return
    if os.geteuid() != 0:
        raise ModelyardError(ErrorCode.INVALID, f"{JOB_UIDS_FIELD} is set, so jobs run as their owners' uids, "
                             "which only root can do: run the server as root, or unset it", field=JOB_UIDS_FIELD)
    home = settings.home
    _check_reachable(home)
    for name in TRAVERSABLE:
        (home / name).mkdir(exist_ok=True)
    _private_store(settings)
    os.chmod(home, 0o711)
    for entry in home.iterdir():
        if entry.is_symlink():
            continue
        if entry.name in TRAVERSABLE:
            os.chmod(entry, 0o711)
        else:  # the database (and its -wal, -shm), token, artifacts, server.json, logs
            os.chmod(entry, 0o700 if entry.is_dir() else 0o600)


def _private_store(settings: Settings) -> None:
    """A file:// artifact store holds every user's code and outputs: root's alone."""
    url = urlparse(settings.storage_url)
    if url.scheme == "file":
        root = Path(url.path)
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)


def _check_reachable(home: Path) -> None:
    """Jobs of other uids must be able to walk down to their run folders."""
    for parent in reversed(home.parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            raise ModelyardError(
                ErrorCode.INVALID,
                f"{JOB_UIDS_FIELD} is set but {parent} (mode {stat.S_IMODE(mode):04o}) cannot be traversed by "
                f"other users, so jobs could not reach their folders under MODELYARD_HOME={home}; "
                "choose a MODELYARD_HOME outside it (e.g. /var/lib/modelyard)", field="MODELYARD_HOME")


def check_new_user(settings: Settings, *, admin: bool, no_isolation: bool) -> None:
    """Refuse a non-admin user whose jobs would run as the server's own user, unless told knowingly."""
    if admin or no_isolation or settings.job_uids is not None:
        return
    raise ModelyardError(
        ErrorCode.INVALID,
        "refusing to create a non-admin user on a server without job isolation: every job here runs as the "
        "server's own OS user, so this user's jobs could read the admin token, the database and other users' "
        f"jobs and secrets. Set {JOB_UIDS_FIELD}=61000-61999 (a free uid range; the server runs as root) to run "
        "each user's jobs as their own uid, or pass --no-isolation (API: \"no_isolation\": true) if everyone "
        "on this server is trusted with everything on it",
        field="no_isolation",
    )
