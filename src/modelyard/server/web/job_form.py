"""What the new-job form offers beyond its fixed fields: the jobs whose code it can reuse, and its
fields filled from a job (``/ui/new?from=ID``: a next round of that job, with its outputs to resume
from and its code or new code). The form's fields are named as ``static/js/form.js`` reads them.
"""
from __future__ import annotations

from typing import Any

from modelyard.db import jobs as store_jobs
from modelyard.db.records import User
from modelyard.db.engine import Database
from modelyard.server.serialize import job_to_dict
from modelyard.server.web.render import command_text

CODE_JOBS = 100  # the latest jobs with code offered as "the code of job #N"
CARRIED = ("nodes", "nproc_per_node", "node_labels", "webhooks", "webhook_events")  # spec fields the form has no field for


def code_jobs(db: Database, user: User) -> list[dict[str, Any]]:
    """``user``'s own latest jobs that have a snapshot: id, name, snapshot key."""
    jobs, _ = store_jobs.list_jobs(db, user=user, all_users=False, state=None, q=None, limit=CODE_JOBS, offset=0)
    return [{"id": j.id, "name": j.name, "snapshot": j.snapshot_key} for j in jobs if j.snapshot_key]


def prefill(db: Database, user: User, job_id: int) -> dict[str, Any]:
    """The form's values for a next round of job ``job_id`` (NOT_FOUND when ``user`` cannot see it)."""
    job = job_to_dict(store_jobs.get_job(db, job_id, user=user))
    r = job["resources"]
    values: dict[str, Any] = {
        "name": job["name"], "command": command_text(job["command"]),
        "resources.gpus": str(r["gpus"]), "resources.cpus": _number(r["cpus"]),
        "resources.memory": size_text(r["memory"]), "priority": str(job["priority"]),
        "max_runtime": seconds_text(job["max_runtime"]), "sync_interval": seconds_text(job["sync_interval"]),
        "retries": str(job["retries"]), "env": "\n".join(f"{k}={v}" for k, v in job["env"].items()),
        "dataset": job["dataset"] or "", "environment": job["environment"] or "",
        "params": [(k, _param_text(v)) for k, v in job["params"].items()], "tags": ", ".join(job["tags"]),
        "metric_patterns": "\n".join(job.get("metric_patterns") or []),
    }
    if not job["environment"]:  # a named environment is chosen again by name, not as what it was pinned to
        values.update(image=job["image"] or "", requirements=job["requirements"] or "")
    # what the form has no field for goes on as it was (a secret's value cannot: it is sealed)
    extra = {k: job[k] for k in CARRIED if job.get(k)}
    return {"job": {"id": job["id"], "name": job["name"], "snapshot": job["snapshot"],
                    "secrets": sorted(job["secrets"])}, "values": values, "extra": extra}


def size_text(n: int) -> str:
    for unit, factor in (("G", 1024 ** 3), ("M", 1024 ** 2), ("K", 1024)):
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n) if n else ""


def seconds_text(s: float) -> str:
    for unit, factor in (("h", 3600), ("m", 60)):
        if s % factor == 0:
            return f"{int(s // factor)}{unit}"
    return f"{_number(s)}s"


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _param_text(v: object) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)
