"""Users as an admin manages them: quotas, admin flags, tokens, and what each uses. Also the submit-time
checks quotas and the runtime cap make.

The API routes (server/routes_users.py) and the pages (/ui/admin/users, /ui/me)
both call this module; it decides who may see and change what: an admin any
user, anyone else only their own usage and quota (``my_account``).

Nomenclature: a user's *own* quota is what an admin set for them (None per
resource: not set); their *quota* is that over the server's default
(``MODELYARD_DEFAULT_QUOTA``); *usage* is what their jobs hold now (GPUs, CPUs,
queued jobs) and their fair-share GPU-hours (scheduler/fairshare.py).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.jobs import JobSpec
from modelyard.jobs.spec import DEFAULT_MAX_RUNTIME
from modelyard.jobs.units import format_duration
from modelyard.scheduler import policy
from modelyard.scheduler.loop import recent_usage
from modelyard.db import jobs as store_jobs
from modelyard.db import quotas as store_quotas
from modelyard.db.engine import Database
from modelyard.db.records import Token, User
from modelyard.db.users import list_tokens, revoke_token

UNSET: Any = object()  # a quota change that leaves the value as it is


@dataclass(frozen=True)
class Usage:
    gpus: int  # held by running jobs, all nodes counted
    cpus: float
    queued: int
    gpu_hours: float  # decayed (fair share)


@dataclass(frozen=True)
class Account:
    """A user as the users page shows them."""

    id: int
    name: str
    is_admin: bool
    email: str | None
    created_at: float
    own: dict[str, float | None]  # what an admin set
    quota: policy.Quota  # over the default
    usage: Usage

    def to_dict(self) -> dict[str, Any]:
        q = self.quota
        return {"id": self.id, "name": self.name, "is_admin": self.is_admin, "email": self.email,
                "own_quota": self.own, "quota": {"gpus": q.gpus, "cpus": q.cpus, "queued": q.queued},
                "usage": {"gpus": self.usage.gpus, "cpus": self.usage.cpus, "queued": self.usage.queued,
                          "gpu_hours": round(self.usage.gpu_hours, 3)}}


class Users:
    """The users service over one database and the server's settings."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings

    # -- reading --------------------------------------------------------------------------------

    def accounts(self, admin: User, *, now: float | None = None) -> list[Account]:
        _require_admin(admin)
        now = time.time() if now is None else now
        held = self._held()
        queued = store_quotas.queued_counts(self.db)
        used = recent_usage(self.db, now, self.settings.fairshare_halflife)
        return [self._account(r, held, queued, used) for r in store_quotas.list_users(self.db)]

    def account(self, admin: User, name: str, *, now: float | None = None) -> Account:
        _require_admin(admin)
        return self._one(store_quotas.get_user(self.db, name), now)

    def my_account(self, user: User, *, now: float | None = None) -> Account:
        return self._one(store_quotas.get_user_by_id(self.db, user.id), now)

    def _one(self, row: store_quotas.UserRow, now: float | None) -> Account:
        now = time.time() if now is None else now
        used = recent_usage(self.db, now, self.settings.fairshare_halflife, user_id=row.id)
        return self._account(row, self._held(), {row.id: store_quotas.queued_count(self.db, row.id)}, used)

    def _held(self) -> dict[int, tuple[int, float]]:
        out: dict[int, tuple[int, float]] = {}
        for a in store_jobs.running_allocations(self.db):
            n = len(a.slices) or 1
            g, c = out.get(a.user_id, (0, 0.0))
            out[a.user_id] = (g + a.resources.gpus * n, c + a.resources.cpus * n)
        return out

    def _account(self, r: store_quotas.UserRow, held: dict[int, tuple[int, float]], queued: dict[int, int],
                 used: dict[str, float]) -> Account:
        gpus, cpus = held.get(r.id, (0, 0.0))
        return Account(r.id, r.name, r.is_admin, r.email, r.created_at, r.quota,
                       policy.Quota.of(r.quota, self.settings.default_quota),
                       Usage(gpus, cpus, queued.get(r.id, 0), used.get(str(r.id), 0.0)))

    def quota_of(self, user_id: int) -> policy.Quota:
        own = store_quotas.quota_rows(self.db).get(user_id, {})
        return policy.Quota.of(own, self.settings.default_quota)

    # -- changing -------------------------------------------------------------------------------

    def set_quota(self, admin: User, name: str, *, gpus: Any = UNSET, cpus: Any = UNSET,
                  queued: Any = UNSET) -> Account:
        """Set some of ``name``'s quotas; None clears one (the default applies again)."""
        _require_admin(admin)
        changes = {k: v for k, v in (("gpus", gpus), ("cpus", cpus), ("queued", queued)) if v is not UNSET}
        for key, value in changes.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                      or (key != "cpus" and value != int(value))):
                what = "a number" if key == "cpus" else "a whole number"
                raise ModelyardError(ErrorCode.INVALID, f"use {what} >= 0, or none to clear it", field=key)
        store_quotas.set_quota(self.db, name, {k: (None if v is None else (float(v) if k == "cpus" else int(v)))
                                               for k, v in changes.items()})
        return self.account(admin, name)

    def set_admin(self, admin: User, name: str, is_admin: bool) -> Account:
        """Make ``name`` an admin or not. An admin cannot demote themself (another admin must), so
        a slip of one's own, or a stolen session of one admin, cannot lock every admin out."""
        _require_admin(admin)
        if name == admin.name and not is_admin:
            raise ModelyardError(ErrorCode.CONFLICT, "you cannot remove your own admin rights; another admin "
                                 "can", field="admin")
        store_quotas.set_admin(self.db, name, is_admin)
        return self.account(admin, name)

    def tokens(self, admin: User, name: str) -> list[Token]:
        _require_admin(admin)
        row = store_quotas.get_user(self.db, name)
        return list_tokens(self.db, user_id=row.id)

    def revoke_token(self, admin: User, name: str, token_id: int) -> Token:
        _require_admin(admin)
        row = store_quotas.get_user(self.db, name)
        if not any(t.id == token_id for t in list_tokens(self.db, user_id=row.id)):
            raise not_found(f"token {token_id} of {name}")
        return revoke_token(self.db, str(token_id), user=admin)

    # -- at submit ------------------------------------------------------------------------------

    def check_submit(self, user: User, spec: JobSpec) -> tuple[JobSpec, Callable[[Connection], None] | None]:
        """``spec`` as it may be queued for ``user`` (its max runtime within the cap, a default one
        held to it; else a clear refusal), and the check of room in their queue that the job's own
        transaction runs (``store_jobs.create_job(queue_check=)``), or None where they have no limit."""
        return self.check_runtime(spec), self.queue_check(user.id, user.name)

    def queue_check(self, owner_id: int, owner: str) -> Callable[[Connection], None] | None:
        """What a transaction that queues one more job of ``owner`` runs first (None: no limit)."""
        limit = self.quota_of(owner_id).queued
        if limit is None:
            return None

        def check(conn: Connection) -> None:
            waiting = store_quotas.queue_room(conn, owner_id, limit)
            if waiting is not None:
                raise ModelyardError(ErrorCode.CONFLICT, f"{owner} has {waiting} of their {limit} queued jobs "
                                     "(quota); wait for some to start, or stop some", field="quota_queued")

        return check

    def check_runtime(self, spec: JobSpec) -> JobSpec:
        cap = self.settings.max_runtime_cap
        if spec.max_runtime <= cap:
            return spec
        # The default (the CLI sends it spelled out), longer than this server allows: held to the cap.
        if "max_runtime" not in spec.model_fields_set or spec.max_runtime == DEFAULT_MAX_RUNTIME:
            return spec.model_copy(update={"max_runtime": cap})
        raise ModelyardError(ErrorCode.INVALID, f"asks for a max runtime of {duration_text(spec.max_runtime)}, "
                             f"past this server's cap of {duration_text(cap)} (MODELYARD_MAX_RUNTIME_CAP)",
                             field="max_runtime")


def _require_admin(user: User) -> None:
    if not user.is_admin:
        raise ModelyardError(ErrorCode.FORBIDDEN, "only an admin may manage users")


# -- words for the queue page ---------------------------------------------------------------------

RESOURCE_NAMES = {"gpus": "GPUs", "cpus": "CPUs"}


def hold_text(hold: policy.Hold, name: str) -> str:
    """"alice uses 4 of her 4 GPUs"."""
    return (f"{name} uses {hold.used:g} of their {hold.limit:g} {RESOURCE_NAMES[hold.resource]} "
            "(quota)")


def duration_text(seconds: float) -> str:
    """"7d", "72h", "90m", else format_duration's words: how a half-life or a cap reads best."""
    # days only from a week up: a cap reads as AVA's "72h", not "3d"
    for unit, size, least in (("d", 86400, 7 * 86400), ("h", 3600, 3600), ("m", 60, 60)):
        if seconds >= least and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return format_duration(seconds)
