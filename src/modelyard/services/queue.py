"""The queue as people read it: what runs where, what waits, and why (its user's quota, fair share
order, a resource, a reservation). The queue API and the queue and job pages all read it from here.
"""
from __future__ import annotations

import time
from typing import Any

from modelyard.jobs import Resources
from modelyard.jobs.nodes import matches
from modelyard.jobs.units import format_size
from modelyard.scheduler import policy
from modelyard.scheduler.loop import queued_job, recent_usage, running_job, user_quotas
from modelyard.server.platform import Platform
from modelyard.services.users import duration_text, hold_text
from modelyard.db import jobs as store_jobs
from modelyard.db import quotas as store_quotas
from modelyard.db.records import Job, User

RESOURCE_WORDS = {"gpus": "GPU(s)", "cpus": "CPU(s)", "memory": "bytes of memory"}


def node_row(n: policy.NodeUsage) -> dict[str, Any]:
    """One node as the capacity API and the queue page show it: what it has and what is used there."""
    node = n.node
    return {"id": node.id, "address": getattr(node, "address", None), "labels": dict(node.labels),
            "total": node.total.model_dump(), "used": {"gpus": len(n.gpus), "cpus": n.cpus, "memory": n.memory},
            "gpus_used": list(n.gpus), "jobs": len(n.jobs),
            "gpus": [{"index": g.index, "name": g.name, "memory_total": g.memory_total}
                     for g in getattr(node, "gpus", ())]}


def _visible(job: Job, user: User) -> bool:
    return user.is_admin or job.user_id == user.id


def _brief(job: Job, user: User) -> dict[str, Any]:
    """A job in the queue view; another user's job shows only what it holds (names can be private)."""
    if not _visible(job, user):
        return {"id": None, "name": None, "owner": None, "mine": False}
    return {"id": job.id, "name": job.name, "owner": job.owner, "mine": job.user_id == user.id}


def waiting_reason(p: Platform, user: User, job_id: int, *, now: float | None = None) -> dict[str, Any] | None:
    """One queued job's row of the queue view (its place and why it waits), or None if it is not queued."""
    rows = queue_view(p, user, now=now, only=job_id)["waiting"]
    return rows[0] if rows else None


def queue_view(p: Platform, user: User, *, now: float | None = None, only: int | None = None) -> dict[str, Any]:
    """``only``: the row of that one waiting job, and no running rows (the job page's line)."""
    now = time.time() if now is None else now
    allocations = store_jobs.running_allocations(p.db)
    capacity = p.capacity
    pending = [queued_job(q) for q in store_jobs.queued_jobs(p.db)]
    running = [running_job(a) for a in allocations]
    nodes = policy.usage(capacity, running)
    total = capacity.total
    used = Resources.model_construct(gpus=sum(len(n.gpus) for n in nodes), cpus=sum(n.cpus for n in nodes),
                                     memory=sum(n.memory for n in nodes))
    quotas, default = user_quotas(p.db, p.settings.default_quota)
    usage = recent_usage(p.db, now, p.settings.fairshare_halflife)
    decision = policy.decide(pending, running, capacity, now, quotas=quotas, default_quota=default, usage=usage,
                             explain=True)
    starting = {pl.job_id for pl in decision.placements}
    ordered = policy.queue_order(pending, usage)
    head = ordered[0].id if ordered else None
    names = _user_names(p, user)
    first_of_level: dict[int, str | None] = {}  # priority -> the user whose jobs come first in it
    waiting = []
    for position, q in enumerate(ordered, start=1):
        first = first_of_level.setdefault(q.priority, q.user)
        if only is not None and q.id != only:
            continue
        job = store_jobs.get_job(p.db, q.id)
        free = _most_free(q, nodes)
        short = [k for k in ("gpus", "cpus", "memory") if getattr(q.resources, k) > getattr(free, k) + 1e-9]
        hold = decision.held.get(q.id)
        if hold is not None:
            reason = "waits: " + hold_text(hold, names.get(hold.user, "its owner"))
        else:
            reason = _why_waiting(q, short, free, nodes, starting, head, decision.reservation)
            if first != q.user and usage.get(first, 0.0) < usage.get(q.user, 0.0) and q.id not in starting:
                fair = _fair_share_reason(q.user, first, usage, names, p.settings.fairshare_halflife)
                reason = fair if reason.startswith("waits its turn") else f"{reason}; {fair}"
        waiting.append({**_brief(job, user), "position": position, "priority": q.priority,
                        "resources": q.resources.model_dump(), "nodes": q.nodes, "node_labels": dict(q.labels),
                        "waits_for": (["quota"] if hold is not None else [])
                        or short or (["nodes"] if _room_on(q, nodes) < q.nodes else []),
                        "reason": reason, "queued_for": now - job.queued_at})
    return {
        "capacity": {"total": total.model_dump(), "used": used.model_dump(), "free": (total - used).model_dump(),
                     "gpus": [{"index": g.index, "name": g.name, "memory_total": g.memory_total}
                              for g in capacity.gpus],
                     "nodes": [node_row(n) for n in nodes]},
        "running": [] if only is not None else [_running_row(p, a, user, now) for a in allocations],
        "waiting": waiting,
    }


def _user_names(p: Platform, user: User) -> dict[str | None, str]:
    """The names the viewer may see, as the policy names users (an admin: all; anyone else: their own)."""
    if not user.is_admin:
        return {str(user.id): user.name}
    return {str(r.id): r.name for r in store_quotas.list_users(p.db)}


def _fair_share_reason(mine: str | None, first: str | None, usage: dict[str, float],
                       names: dict[str | None, str], halflife: float) -> str:
    theirs = names.get(first, "another user")
    me = names.get(mine, "its owner")
    return (f"behind {theirs}'s jobs (fair share): {me} used {usage.get(mine, 0.0):.1f} GPU-h recently "
            f"(half-life {duration_text(halflife)}), {theirs} {usage.get(first, 0.0):.1f}")


def _matching(q: policy.QueuedJob, nodes: list[policy.NodeUsage]) -> list[policy.NodeUsage]:
    return [n for n in nodes if matches(n.node.labels, q.labels)]


def _most_free(q: policy.QueuedJob, nodes: list[policy.NodeUsage]) -> Resources:
    """The most of each resource free on any one node ``q`` may run on."""
    free = [n.free for n in _matching(q, nodes)]
    return Resources.model_construct(gpus=max((f.gpus for f in free), default=0),
                                     cpus=max((f.cpus for f in free), default=0),
                                     memory=max((f.memory for f in free), default=0))


def _room_on(q: policy.QueuedJob, nodes: list[policy.NodeUsage]) -> int:
    """How many nodes ``q`` may run on could hold one of its ranks now."""
    return sum(1 for n in _matching(q, nodes) if q.resources.fits_in(n.free))


def _running_row(p: Platform, a: store_jobs.Allocation, user: User, now: float) -> dict[str, Any]:
    job = store_jobs.get_job(p.db, a.job_id)
    return {**_brief(job, user), "state": job.state.value, "gpus": list(a.gpus),
            "resources": a.resources.model_dump(), "nodes": [s.node for s in a.slices],
            "running_for": now - (job.started_at or now), "ends_by": a.expected_end}


def _why_waiting(q: policy.QueuedJob, short: list[str], free: Resources, nodes: list[policy.NodeUsage],
                 starting: set[int], head: int | None, reservation: policy.Reservation | None) -> str:
    if q.id in starting:
        return "starting now"
    on = "free on one node" if len(nodes) > 1 else "free"
    if q.labels and not _matching(q, nodes):
        return "waits for a node with its labels (none is up now)"
    if short:
        k = short[0]
        asked, have = getattr(q.resources, k), max(getattr(free, k), 0)
        if k == "memory":
            return f"waits for memory: asks {format_size(asked)}, {format_size(have)} {on}"
        return f"waits for {k}: asks {asked:g}, {have:g} {on}"
    if q.nodes > 1 and (room := _room_on(q, nodes)) < q.nodes:
        return f"waits for {q.nodes} nodes: {room} can hold a rank now"
    if reservation is not None and reservation.job_id != q.id:
        return f"waits behind job #{reservation.job_id}, which has the next reservation"
    if head is not None and head != q.id:
        return "waits its turn (priority, then submit order)"
    return "waits for the next scheduling pass"
