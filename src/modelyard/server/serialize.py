"""Records to the JSON shapes of docs/api.md: one place, used by every route."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from modelyard.datasets import Manifest
from modelyard.jobs.spec import MASK
from modelyard.db.records import Attempt, Event, Job, NamedEnvironment, Token
from modelyard.db.secrets import SecretInfo


def iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z") if t is not None else None


def token_to_dict(t: Token, *, now: float | None = None) -> dict[str, Any]:
    """A token as listings show it: its first characters, never the token."""
    now = time.time() if now is None else now
    return {"id": t.id, "name": t.name, "prefix": t.prefix, "owner": t.owner, "created_at": iso(t.created_at),
            "expires_at": iso(t.expires_at), "expired": t.expires_at is not None and t.expires_at <= now}


def attempt_to_dict(a: Attempt) -> dict[str, Any]:
    return {
        "number": a.number, "state": a.state.value, "exit_code": a.exit_code, "reason": a.reason,
        "message": a.message, "gpus": list(a.gpus), "nodes": [sl.to_dict() for sl in a.slices],
        "created_at": iso(a.created_at),
        "started_at": iso(a.started_at), "ended_at": iso(a.ended_at),
    }


def job_to_dict(job: Job, attempts: list[Attempt] | None = None) -> dict[str, Any]:
    s = job.spec
    return {
        "id": job.id, "name": job.name, "owner": job.owner, "state": job.state.value,
        "exit_code": job.exit_code, "message": job.message, "attempt": job.attempt,
        "attempts": [attempt_to_dict(a) for a in attempts or []],
        "resources": job.resources.model_dump(),  # per node
        "nodes": s.nodes, "nproc_per_node": s.nproc_per_node, "node_labels": s.node_labels,
        "command": s.command, "priority": job.priority,
        # as they are now: the spec's, and those its MLflow client logged; tags editable after submit
        "params": dict(job.params), "tags": list(job.tags),
        "kind": job.kind, "has_process": job.has_process,  # "run": an MLflow run with no process
        "experiment_id": job.experiment_id, "experiment": s.experiment,  # its run's now; the name it was submitted into
        "max_runtime": s.max_runtime, "sync_interval": s.sync_interval, "retries": s.retries,
        "retries_left": job.retries_left, "env": s.env, "webhooks": s.webhooks,
        "webhook_events": s.webhook_events,  # empty: the owner's choices (modelyard notify), every end by default
        "metric_patterns": s.metric_patterns,
        "console": s.console.model_dump() if s.console else None,  # set: a notebook console (README)
        "secrets": {name: MASK for name in s.secrets},  # names only: a value is never shown back
        "snapshot": job.snapshot_key, "resume_from": job.resume_from,
        "dataset": job.dataset, "dataset_requested": s.dataset,
        # what it runs in: the image or requirements it was pinned to, and the named environment they came from
        "image": s.image, "requirements": s.requirements, "environment": job.environment,
        "created_at": iso(job.created_at), "queued_at": iso(job.queued_at),
        "started_at": iso(job.started_at), "ended_at": iso(job.ended_at),
        "removed_at": iso(job.removed_at),  # set: removed, only its final/ kept (README "Removing jobs")
        "sweep_id": job.sweep_id, "trial": job.trial,  # a sweep's trial (README "Sweeps")
    }


def environment_to_dict(e: NamedEnvironment) -> dict[str, Any]:
    return {
        "name": e.name, "owner": e.owner, "shared": e.owner_is_admin, "image": e.image,
        "requirements": e.requirements, "description": e.description, "created_at": iso(e.created_at),
    }


def event_to_dict(e: Event) -> dict[str, Any]:
    return {
        "id": e.id, "job_id": e.job_id, "time": iso(e.time), "attempt": e.attempt,
        "from": e.from_state.value if e.from_state else None, "to": e.to_state.value, "reason": e.reason,
        "actor": e.actor,
    }


def dataset_to_dict(m: Manifest, *, files: bool = True) -> dict[str, Any]:
    """A dataset version: its manifest, its ``ref`` and file count; ``files=False`` for listings."""
    d = m.to_dict()
    d["ref"] = m.ref
    d["file_count"] = len(m.files)
    if not files:
        del d["files"]
    return d


def secret_to_dict(s: SecretInfo) -> dict[str, Any]:
    return {"name": s.name, "created_at": iso(s.created_at), "updated_at": iso(s.updated_at)}
