"""The artifact store (fsspec: ``file://`` or ``s3://``) and code snapshots."""
from modelyard.artifacts.snapshot import SnapshotInfo, collect_files, extract_snapshot, make_snapshot
from modelyard.artifacts.store import ArtifactStore, Entry, Fingerprint, SyncResult

__all__ = [
    "ArtifactStore", "Entry", "Fingerprint", "SyncResult",
    "SnapshotInfo", "collect_files", "extract_snapshot", "make_snapshot",
]
