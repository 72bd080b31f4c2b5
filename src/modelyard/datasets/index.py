"""Where the list of dataset versions lives, behind ``DatasetIndex``.

``StoreIndex`` (today's only one) derives it from the artifact store itself: a
version exists exactly when ``datasets/<name>/<version>/manifest.json`` does, which
is written last by a create and deleted first by a removal. A database-backed index
can implement the same four methods; the manifest in the store stays the source
of truth for a version's files.
"""
from __future__ import annotations

from typing import Protocol

from modelyard.datasets.manifest import MANIFEST, Manifest, version_prefix
from modelyard.datasets.names import NAME_RE, VERSION_RE
from modelyard.errors import ModelyardError
from modelyard.artifacts import ArtifactStore

ROOT = "datasets"


class DatasetIndex(Protocol):
    def names(self) -> list[str]: ...

    def versions(self, name: str) -> list[Manifest]:
        """Every version of ``name``, oldest first."""
        ...

    def add(self, manifest: Manifest) -> None:
        """Record a version whose files and manifest are already in the store."""
        ...

    def remove(self, manifest: Manifest) -> None:
        """Forget a version; called before its files are deleted."""
        ...


class StoreIndex:
    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    def _children(self, key: str) -> list[str]:
        path = self.store.path(key)
        self.store.fs.invalidate_cache(path)  # other processes add versions; fsspec caches listings
        try:
            found = self.store.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in found)

    def names(self) -> list[str]:
        return [n for n in self._children(ROOT) if NAME_RE.fullmatch(n) and self.versions(n)]

    def versions(self, name: str) -> list[Manifest]:
        manifests = []
        for version in self._children(f"{ROOT}/{name}"):
            if not VERSION_RE.fullmatch(version):
                continue
            try:
                data = self.store.read_bytes(f"{version_prefix(name, version)}/{MANIFEST}")
            except ModelyardError:
                continue  # a create in progress or one that failed: not a version
            manifests.append(Manifest.from_json(data))
        return sorted(manifests, key=lambda m: (m.created_at, m.version))

    def add(self, manifest: Manifest) -> None:
        pass  # the manifest in the store is the record

    def remove(self, manifest: Manifest) -> None:
        self.store.delete_prefix(f"{manifest.prefix}/{MANIFEST}")
