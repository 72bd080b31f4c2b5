"""Sweeps as routes, pages and the CLI see them: create, list, show (trials, best), stop.

A sweep's trials are ordinary jobs of its owner (services/sweep_driver.py queues them through
``Platform.submit``: the same environments, queue, quotas and charts). Only the owner (or an
admin) reaches a sweep; another user's answers 404, as one that does not exist.
"""
from __future__ import annotations

import math
from typing import Any

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.sweep import SweepSpec
from modelyard.server.platform import Platform
from modelyard.server.serialize import iso
from modelyard.db import reports
from modelyard.db import sweeps as store_sweeps
from modelyard.db.records import User
from modelyard.db.sweeps import Sweep

# Optuna's trial states (by name: Optuna is imported once there is a sweep) as a sweep's trials show
TRIAL_STATES = {"RUNNING": "running", "COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "WAITING": "waiting"}


def create(p: Platform, user: User, spec: SweepSpec, *, snapshot: str | None) -> dict[str, Any]:
    """Start a sweep; its first trials are queued by the driver's next pass (at once: it is woken).
    A trial's job that could never be queued (too big, a bad snapshot, ...) is refused here; its
    dataset is pinned to the version it names now."""
    try:
        p.check_submittable(user, spec.first_trial(), snapshot=snapshot)
        pinned = p.pin_dataset(spec.job.dataset, user).ref if spec.job.dataset else None
    except ModelyardError as e:  # about the trials' job: its fields are under the sweep's `job`
        field = e.field if e.field in (None, "snapshot") else f"job.{e.field}"
        raise ModelyardError(e.code, e.message, field=field) from None
    if pinned:  # pinned now: every trial reads the same version, whatever is added meanwhile
        spec = spec.model_copy(update={"job": spec.job.model_copy(update={"dataset": pinned})})
    sweep = store_sweeps.create_sweep(p.db, user=user, spec=spec, snapshot_key=snapshot)
    p.sweeps.study(sweep)  # made now, so a bad storage is the request's error, not a silent pass
    p.sweeps.wake()
    return view(p, sweep)


def listing(p: Platform, user: User, *, limit: int = 50, offset: int = 0) -> dict[str, Any]:
    found, total = store_sweeps.list_sweeps(p.db, user=user, limit=limit, offset=offset)
    return {"sweeps": [summary(s) for s in found], "total": total}


def show(p: Platform, user: User, sweep_id: int) -> dict[str, Any]:
    return view(p, store_sweeps.get_sweep(p.db, sweep_id, user=user))


def stop(p: Platform, user: User, sweep_id: int) -> dict[str, Any]:
    """Stop the sweep and every trial of it in flight."""
    sweep = store_sweeps.get_sweep(p.db, sweep_id, user=user)
    if not p.sweeps.end(sweep, user, "stopped", message=f"stopped by {user.name}"):
        sweep = store_sweeps.get_sweep(p.db, sweep_id)
        raise ModelyardError(ErrorCode.CONFLICT, f"sweep {sweep_id} has already ended ({sweep.state})")
    return show(p, user, sweep_id)


def summary(s: Sweep) -> dict[str, Any]:
    return {"id": s.id, "name": s.name, "owner": s.owner, "state": s.state, "method": s.spec.method,
            "metric": s.spec.metric.model_dump(), "max_trials": s.spec.trial_limit(), "parallel": s.spec.parallel,
            "best_job_id": s.best_job_id, "message": s.message, "study": s.study, "created_at": iso(s.created_at),
            "ended_at": iso(s.ended_at)}


def view(p: Platform, s: Sweep) -> dict[str, Any]:
    """The sweep with its trials (number, job, parameters, objective, state) and its best trial."""
    jobs = store_sweeps.trial_jobs(p.db, s.id)
    latest = reports.latest_points(p.db, [j.id for j in jobs.values()], s.spec.metric.name) if jobs else {}
    trials = []
    for t in p.sweeps.study(s).get_trials(deepcopy=False):
        job = jobs.get(t.number)
        last = latest.get(job.id, {}).get("value") if job else None
        trials.append({
            "number": t.number, "job_id": job.id if job else None, "state": TRIAL_STATES.get(t.state.name, t.state.name.lower()),
            "job_state": job.state.value if job else None, "params": dict(t.params),
            "value": _number(t.value), "last": _number(last), "steps": len(t.intermediate_values),
            "message": job.message if job else None,
        })
    done = [t for t in trials if t["state"] == "complete" and t["value"] is not None]
    pick = min if s.spec.metric.goal == "minimize" else max
    best = pick(done, key=lambda t: t["value"]) if done else None
    return {**summary(s), "parameters": list(s.spec.parameters), "trials": trials, "best": best,
            "spec": s.spec.model_dump(mode="json")}


def _number(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None
