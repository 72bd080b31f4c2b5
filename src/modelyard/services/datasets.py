"""Datasets as a user sees them: the versions in the artifact store (``StoreIndex``) joined
with their owners (``store.datasets``), filtered by the policy in ``datasets.access``.

The API routes, the web pages and ``Platform`` (submit, restart, removal) all ask
here, so a private dataset is hidden the same way everywhere. A write that must
agree with a submit or a removal (claiming a name, recording a new version,
forgetting the last one) runs under the name's lock (``store.jobs.lock_dataset``).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from modelyard.datasets import DatasetIndex, Manifest, StoreIndex, get_version, list_datasets, parse_ref, validate_name
from modelyard.datasets.access import (
    PRIVATE, Ownership, can_change, can_read, check_change, check_read, check_visibility, hidden, reads_server_disk,
    shown_source,
)
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.server.serialize import dataset_to_dict, iso
from modelyard.db import datasets as store_ds
from modelyard.db import jobs as store_jobs
from modelyard.db.engine import Database
from modelyard.db.records import User

# A name taken by a create that never published a version (the server stopped mid-way) is
# free again after this: without it, nobody but its would-be owner could ever use the name.
STALE_CLAIM = 24 * 3600.0


class DatasetService:
    def __init__(self, db: Database, index: StoreIndex, *, uploads: Path) -> None:
        self.db, self.index, self.uploads = db, index, uploads

    # -- reading ----------------------------------------------------------------------------

    def ownership(self, name: str) -> Ownership:
        return store_ds.ownership(self.db, name)

    def readable(self, name: str, user: User) -> tuple[Ownership, list[Manifest]]:
        """The name's owner and versions (oldest first); NOT_FOUND when it has none or ``user`` may not read it."""
        o = check_read(self.ownership(validate_name(name, field="dataset")), user)
        versions = list_datasets(self.index, name)
        if not versions:
            raise hidden(name)
        return o, versions

    def version(self, ref: str, user: User) -> Manifest:
        """``NAME`` or ``NAME:VERSION`` as ``get_version`` finds it, if ``user`` may read it."""
        check_read(self.ownership(parse_ref(ref).name), user)
        return get_version(self.index, ref)

    def listing(self, user: User) -> list[tuple[Ownership, list[Manifest]]]:
        """The names ``user`` may read that have versions, by name (versions oldest first)."""
        owners, before_owners = store_ds.all_owners(self.db), store_ds.default_owner(self.db, "")
        out = []
        for name in self.index.names():
            o = owners.get(name) or replace(before_owners, name=name)
            if can_read(o, user) and (versions := self.index.versions(name)):
                out.append((o, versions))
        return out

    def history(self, name: str) -> list[store_ds.DatasetEvent]:
        return store_ds.history(self.db, name)

    def version_dict(self, m: Manifest, user: User, *, files: bool = True) -> dict[str, Any]:
        """A version for ``user``: its ``source`` a neutral word unless they may see server paths."""
        d = dataset_to_dict(m, files=files)
        d["source"] = shown_source(m.source, user, on_server=reads_server_disk(m.source),
                                   upload=self.is_upload(m.source))
        return d

    # -- what the dataset API and pages show --------------------------------------------------

    def listing_view(self, user: User) -> dict[str, Any]:
        """The caller's datasets and the public ones (every one, for an admin), by name."""
        return {"datasets": [{"name": o.name, "owner": o.owner, "visibility": o.visibility, "versions": len(vs),
                              "latest": self.version_dict(vs[-1], user, files=False)}
                             for o, vs in self.listing(user)]}

    def name_view(self, name: str, user: User) -> dict[str, Any]:
        o, versions = self.readable(name, user)
        return {"name": name, "owner": o.owner, "visibility": o.visibility, "latest": versions[-1].ref,
                "can_change": can_change(o, user),
                "versions": [self.version_view(m, user) for m in reversed(versions)],  # newest first
                "history": [_event(e) for e in self.history(name)]}

    def version_view(self, m: Manifest, user: User) -> dict[str, Any]:
        """A version with its files and the caller's jobs that used it (every job, for an admin)."""
        jobs = store_jobs.jobs_using_dataset(self.db, m.name, m.version, user=user)
        return {**self.version_dict(m, user), "jobs": [
            {"id": j.id, "name": j.name, "owner": j.owner, "state": j.state.value} for j in jobs]}

    def is_upload(self, source: str) -> bool:
        return source.startswith(str(self.uploads) + "/")

    # -- changing ---------------------------------------------------------------------------

    def claim(self, name: str, user: User, visibility: str | None) -> bool:
        """Before a create: may ``user`` add a version to ``name``? Takes the name if it is new
        (True: this call took it, ``abandon`` it if the create fails). Changes the visibility
        of an existing one when ``visibility`` is given."""
        validate_name(name)
        if visibility is not None:
            check_visibility(visibility)
        with self.db.write() as conn:
            store_jobs.lock_dataset(conn, name)
            found, versions = store_ds.get(conn, name), self.index.versions(name)
            if found is None and versions:
                found = store_ds.legacy(conn, name)
            elif found is not None and not versions and (found.created_at or 0) < time.time() - STALE_CLAIM:
                store_ds.drop(conn, name)
                found = None
            if found is None:
                store_ds.claim(conn, name, user, visibility or PRIVATE)
                return True
            check_change(found, user, "add a version to it")
            if visibility is not None and visibility != found.visibility:
                self._set_visibility(conn, found, user, visibility)
            return False

    def recording_index(self, user: User) -> DatasetIndex:
        """The index a create of ``user`` adds its version through (see ``_Recording``)."""
        return _Recording(self, user)

    def created(self, m: Manifest, user: User) -> None:
        """A version's manifest is in the store: keep the name's row (a failed create of the
        same name may have dropped it meanwhile) and record who created it."""
        with self.db.write() as conn:
            store_jobs.lock_dataset(conn, m.name)
            check_change(store_ds.claim(conn, m.name, user, PRIVATE), user, "add a version to it")
            store_ds.record(conn, m.name, "created", user, version=m.version)

    def abandon(self, name: str) -> None:
        """After a failed create that took ``name``: give the name back if it still has no version."""
        with self.db.write() as conn:
            store_jobs.lock_dataset(conn, name)
            if not self.index.versions(name):
                store_ds.drop(conn, name)

    def set_visibility(self, name: str, user: User, visibility: str) -> Ownership:
        check_visibility(visibility)
        validate_name(name, field="dataset")
        with self.db.write() as conn:
            store_jobs.lock_dataset(conn, name)
            self._set_visibility(conn, self.may_change(conn, name, user, "change its visibility"), user, visibility)
        return self.ownership(name)

    def may_change(self, conn: sa.Connection, name: str, user: User, doing: str) -> Ownership:
        """In a transaction holding the name's lock: its owner, if ``user`` may change it
        (NOT_FOUND when it has no version or they may not read it, FORBIDDEN when only read)."""
        o = store_ds.get(conn, name) or store_ds.legacy(conn, name)
        check_read(o, user)
        if not self.index.versions(name):
            raise hidden(name)
        return check_change(o, user, doing)

    def _set_visibility(self, conn: sa.Connection, o: Ownership, user: User, visibility: str) -> None:
        if not o.recorded:  # a name from before owners gets its row now, with its inferred owner
            if o.owner_id is None:
                raise ModelyardError(ErrorCode.CONFLICT, f"dataset {o.name} has no owner; create an admin first")
            store_ds.claim(conn, o.name, User(o.owner_id, o.owner or "", False), o.visibility)
        store_ds.set_visibility(conn, o.name, visibility)
        store_ds.record(conn, o.name, "visibility", user, detail=f"{o.visibility} -> {visibility}")

    def removed(self, conn: sa.Connection, name: str, versions: list[Manifest], user: User) -> None:
        """In a removal's transaction: record who removed what; forget a name left with no version."""
        if not self.index.versions(name):
            store_ds.drop(conn, name)
            return
        for m in versions:
            store_ds.record(conn, name, "removed", user, version=m.version)


class _Recording:
    """``StoreIndex`` for one create: adding a version also records its owner and creator; if
    that is refused, the create's rollback deletes what it uploaded (``versions._publish``)."""

    def __init__(self, service: DatasetService, user: User) -> None:
        self.service, self.user, self.index = service, user, service.index

    def names(self) -> list[str]:
        return self.index.names()

    def versions(self, name: str) -> list[Manifest]:
        return self.index.versions(name)

    def add(self, manifest: Manifest) -> None:
        self.index.add(manifest)
        self.service.created(manifest, self.user)

    def remove(self, manifest: Manifest) -> None:
        self.index.remove(manifest)


def _event(e: store_ds.DatasetEvent) -> dict[str, Any]:
    return {"time": iso(e.time), "action": e.action, "version": e.version, "actor": e.actor, "detail": e.detail}
