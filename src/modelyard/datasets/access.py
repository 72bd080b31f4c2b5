"""Who may see and change a dataset: the policy, decided here and nowhere else.

    read    list it, show it, download its files, run a job on it:
            its owner, every admin, and everyone when it is public
    change  add a version, remove one, change its visibility: its owner and admins

A caller who may not read a dataset is told it does not exist (NOT_FOUND, the same
answer as for a name nobody has), so a private name cannot be probed; one who
may read it but not change it is told FORBIDDEN. A version's ``source`` may be a
path on the server's own disk (an upload's temporary folder, an admin's import):
only admins see it, everyone else a neutral word.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from modelyard.errors import ErrorCode, ModelyardError

PRIVATE, PUBLIC = "private", "public"
VISIBILITIES = (PRIVATE, PUBLIC)


class Caller(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True)
class Ownership:
    name: str
    owner_id: int | None  # None: no owner (a name from before owners, on a server with no admin yet)
    owner: str | None
    visibility: str
    created_at: float | None = None
    recorded: bool = True  # False: inferred for a name from before owners (no row yet)


def check_visibility(value: str) -> str:
    if value not in VISIBILITIES:
        raise ModelyardError(ErrorCode.INVALID, f"visibility must be private or public, not {value!r}",
                             field="visibility")
    return value


def can_read(o: Ownership, caller: Caller) -> bool:
    return caller.is_admin or o.visibility == PUBLIC or o.owner_id == caller.id


def can_change(o: Ownership, caller: Caller) -> bool:
    return caller.is_admin or o.owner_id == caller.id


def hidden(name: str) -> ModelyardError:
    """What a caller who may not read ``name`` is told: exactly what an unknown name gets."""
    return ModelyardError(ErrorCode.NOT_FOUND, f"dataset {name} not found", field="dataset")


def check_read(o: Ownership, caller: Caller) -> Ownership:
    if not can_read(o, caller):
        raise hidden(o.name)
    return o


def check_change(o: Ownership, caller: Caller, doing: str) -> Ownership:
    check_read(o, caller)
    if not can_change(o, caller):
        raise ModelyardError(ErrorCode.FORBIDDEN, f"dataset {o.name} is {o.owner}'s: only its owner or an admin "
                             f"may {doing}", field="dataset")
    return o


def shown_source(source: str, caller: Caller, *, on_server: bool, upload: bool) -> str:
    """``source`` as ``caller`` may see it: a path on the server only to admins."""
    if caller.is_admin or not on_server:
        return source
    return "upload" if upload else "server"


def reads_server_disk(source: str) -> bool:
    """A plain path, or a URL (chained ones too: ``simplecache::file://...``) on a local filesystem."""
    target = source.split("::")[-1]  # in a chain, the last URL is where the bytes come from
    return "://" not in target or target.split("://", 1)[0].lower() in ("file", "local")
