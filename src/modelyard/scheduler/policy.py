"""The scheduling policy: which queued jobs start now, on which nodes, GPUs and cores. Pure; no I/O.

This module decides placement and nothing else; the scheduler loop feeds it the
store's view of the world and applies what it returns. Capacity is a set of
nodes (the local executor's is one); a job's resources are *per node*. Rules:

1. Queued jobs are considered by priority (highest first), then, within a
   priority, by fair share: the job of the user with the least recent usage
   first (``usage``: user -> decayed GPU-hours, scheduler/fairshare.py), then
   submit order.
2. A job starts when it fits in what is free now: a single-node job on ONE
   node, a job of ``nodes = N`` on N distinct nodes, each holding its
   resources, and only on nodes that carry every one of its labels. GPUs are
   whole and given as specific indices of their node; two jobs never share one.
   Among the nodes that hold it, a job goes on the fullest (fewest free GPUs,
   then CPUs, then memory, then node order), so that whole nodes stay free
   for big jobs.
3. EASY backfill: the first job that does not fit (the *head*) gets a
   reservation — the earliest time N matching nodes can hold it, judged from
   the running jobs' expected ends (start + max_runtime) node by node, and the
   nodes it would take then. A later job may start now only if it fits now
   and either ends before that time or fits, node by node, in what the head
   will leave at that time, so backfill never delays the head.
4. Optionally, per-user quotas of GPUs and CPUs held at once (a job counts
   ``nodes x gpus`` and ``nodes x cpus``): a job that would take its user past
   one waits, without holding a reservation, and the decision says why
   (``Decision.held``: a ``Hold`` per such job).
5. A job that could not fit even on the empty cluster (capacity shrank, or
   nodes left, since it was accepted) neither starts nor blocks the queue.
6. Cores are handed out per node like GPUs, as indices ``0 .. ceil(node
   cpus) - 1``: a job asking for ``c >= 1`` CPUs gets ``ceil(c)`` cores no
   running job holds, where there are that many (a job whose fraction rounds
   past the free cores shares its last one; its cgroup quota still holds it
   to ``c``); a job asking for less than one core shares one with other
   fractional jobs (the fullest that still has room). Fitting is judged on
   CPU counts, as before; cores only say where. Indices beyond the machine's
   real cores (a declared MODELYARD_CAPACITY) are mapped onto them by the
   supervisor.

Nomenclature: *free* is a node's capacity minus what running jobs hold there;
the *shadow time* is the head's reservation; *extra* is, per node, what will be
left at the shadow time once the head has what it needs — backfill that
outlives the shadow time must fit in it; a job's *shape* is what decides
whether it fits (resources, node count, labels), so a shape that did not fit
once in a pass is not tried again (what is free only shrinks during a pass).
"""
from __future__ import annotations

import math
from itertools import repeat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Protocol

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.nodes import LOCAL_NODE, NodeSlice, format_labels, matches
from modelyard.jobs.spec import DEFAULT_MAX_RUNTIME, Resources
from modelyard.jobs.units import format_size

_EPS = 1e-9  # CPU counts are floats; sums of 0.1s must not spuriously overflow


class NodeLike(Protocol):
    """What the policy needs of one node (``executors.capacity.Node`` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def total(self) -> Resources: ...

    @property
    def gpu_indices(self) -> Sequence[int]: ...

    @property
    def labels(self) -> Mapping[str, str]: ...


class CapacityLike(Protocol):
    """What the policy needs of the capacity (``executors.capacity.Capacity`` is one)."""

    @property
    def nodes(self) -> Sequence[NodeLike]: ...


@dataclass(frozen=True, slots=True)
class QueuedJob:
    id: int
    resources: Resources  # per node
    priority: int = 0
    order: float = 0  # submit order: a sequence number or creation time; smaller is earlier
    max_runtime: float = DEFAULT_MAX_RUNTIME
    user: str | None = None
    nodes: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)  # required of every node it runs on


@dataclass(frozen=True, slots=True)
class RunningJob:
    id: int
    resources: Resources  # per node
    slices: Sequence[NodeSlice]  # what it holds, one per node rank
    expected_end: float  # started + max_runtime (Unix time)
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    job_id: int
    slices: tuple[NodeSlice, ...]  # one per node rank, rank 0 first

    @property
    def gpus(self) -> tuple[int, ...]:
        """Rank 0's GPU indices."""
        return self.slices[0].gpus

    @property
    def cores(self) -> tuple[int, ...]:
        """Rank 0's core indices."""
        return self.slices[0].cores

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.slices)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The head job's promise: it starts no later than ``start`` (given the expected ends)."""

    job_id: int
    start: float
    nodes: tuple[str, ...] = ()  # where it would start then


@dataclass(frozen=True, slots=True)
class Quota:
    """What one user's running jobs may hold at once (None: no limit), and how many may queue."""

    gpus: int | None = None
    cpus: float | None = None
    queued: int | None = None  # checked at submit; the pass does not look at it

    def __bool__(self) -> bool:
        return self.gpus is not None or self.cpus is not None or self.queued is not None

    @classmethod
    def of(cls, own: Mapping[str, float | None], default: Mapping[str, float] | None = None) -> "Quota":
        """A user's quota from their own values (None: not set) over the server's default ones."""
        default = default or {}

        def pick(key: str) -> float | None:
            value = own.get(key)
            return default.get(key) if value is None else value

        gpus, cpus, queued = pick("gpus"), pick("cpus"), pick("queued")
        return cls(None if gpus is None else int(gpus), None if cpus is None else float(cpus),
                   None if queued is None else int(queued))


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a job waits for its user's quota: they hold ``used`` of their ``limit`` ``resource``."""

    user: str | None
    resource: str  # "gpus" or "cpus"
    used: float
    limit: float


@dataclass(frozen=True, slots=True)
class Decision:
    placements: list[Placement]
    reservation: Reservation | None
    held: dict[int, Hold] = field(default_factory=dict)  # job id -> its quota hold


# -- satisfiability ------------------------------------------------------------------------------


def check_satisfiable(resources: Resources, capacity: CapacityLike, *, nodes: int = 1,
                      labels: Mapping[str, str] | None = None, gpu_quota: int | None = None,
                      quota: Quota | None = None) -> None:
    """Raise UNSATISFIABLE when a job of ``nodes`` nodes, each asking for ``resources`` on a node
    carrying ``labels``, could never start here (on the capacity as it is now, within ``quota``)."""
    labels = labels or {}
    gpu_limit = quota.gpus if quota is not None and quota.gpus is not None else gpu_quota
    if gpu_limit is not None and resources.gpus * nodes > gpu_limit:
        asked = f"{resources.gpus} GPU(s)" if nodes == 1 else f"{nodes} x {resources.gpus} GPU(s)"
        raise ModelyardError(ErrorCode.UNSATISFIABLE, f"asks for {asked} but the per-user GPU quota is {gpu_limit}",
                             field="resources.gpus")
    if quota is not None and quota.cpus is not None and resources.cpus * nodes > quota.cpus + _EPS:
        asked = f"{resources.cpus:g} CPU(s)" if nodes == 1 else f"{nodes} x {resources.cpus:g} CPU(s)"
        raise ModelyardError(ErrorCode.UNSATISFIABLE, f"asks for {asked} but the per-user CPU quota is "
                             f"{quota.cpus:g}", field="resources.cpus")
    everyone = list(capacity.nodes)
    if not everyone:
        raise ModelyardError(ErrorCode.UNSATISFIABLE, "the platform has no node up now to run it on", field="nodes")
    matching = [n for n in everyone if matches(n.labels, labels)]
    if not matching:
        wanted = format_labels(labels)
        raise ModelyardError(ErrorCode.UNSATISFIABLE, f"no node has label{'s' if len(labels) > 1 else ''} {wanted}"
                             + _known_labels(everyone), field="node_labels")
    holders = [n for n in matching if resources.fits_in(n.total)]
    if len(holders) >= nodes:
        return
    if nodes > 1 and len(everyone) == 1 and everyone[0].id == LOCAL_NODE:
        raise ModelyardError(ErrorCode.UNSATISFIABLE, f"asks for {nodes} nodes but the local executor has one "
                             "node; multi-node jobs need a cluster (MODELYARD_EXECUTOR=ray)", field="nodes")
    if holders or nodes > 1:
        such = f" with {format_labels(labels)}" if labels else ""
        have = f"{len(holders)} such node{'' if len(holders) == 1 else 's'}"
        raise ModelyardError(ErrorCode.UNSATISFIABLE, f"asks for {nodes} nodes{such}, each with "
                             f"{_describe(resources)}; the platform has {have}", field="nodes")
    raise _too_big(resources, matching, single=len(everyone) == 1)


def _too_big(res: Resources, matching: list[NodeLike], *, single: bool) -> ModelyardError:
    """No one matching node holds ``res``: name the first resource none has enough of."""
    where = "this platform has {} {} in total" if single else "the largest node has {} {}"
    most = Resources.model_construct(gpus=max(n.total.gpus for n in matching),
                                     cpus=max(n.total.cpus for n in matching),
                                     memory=max(n.total.memory for n in matching))
    if res.gpus > most.gpus:
        return _unsatisfiable("gpus", f"{res.gpus} GPU(s)", where.format(most.gpus, "gpus"))
    if res.cpus > most.cpus + _EPS:
        return _unsatisfiable("cpus", f"{res.cpus:g} CPU(s)", where.format(f"{most.cpus:g}", "cpus"))
    if res.memory > most.memory:
        return _unsatisfiable("memory", format_size(res.memory), where.format(format_size(most.memory), "memory"))
    return ModelyardError(ErrorCode.UNSATISFIABLE, f"asks for {_describe(res)} on one node, but no node has all "
                          "of that at once", field="resources")


def _describe(res: Resources) -> str:
    parts = [f"{res.gpus} GPU(s)"] if res.gpus else []
    parts.append(f"{res.cpus:g} CPU(s)")
    if res.memory:
        parts.append(format_size(res.memory))
    return ", ".join(parts)


def _known_labels(nodes: list[NodeLike]) -> str:
    known = sorted({f"{k}={v}" for n in nodes for k, v in n.labels.items()})
    if not known:
        return " (no node has labels; MODELYARD_NODE_LABELS sets the local node's)"
    return f" (labels there are: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''})"


def _unsatisfiable(field: str, asked: str, have: str) -> ModelyardError:
    return ModelyardError(ErrorCode.UNSATISFIABLE, f"asks for {asked} but {have}", field=f"resources.{field}")


# -- the pass ------------------------------------------------------------------------------------


Quotas = Mapping[str | None, Quota]


def schedule(
    queued: Iterable[QueuedJob],
    running: Iterable[RunningJob],
    capacity: CapacityLike,
    now: float,
    *,
    gpu_quota: int | Mapping[str | None, int] | None = None,
    quotas: Quotas | None = None,
    default_quota: Quota | None = None,
    usage: Mapping[str | None, float] | None = None,
) -> list[Placement]:
    """The jobs to start now, in start order, with their nodes, GPUs and cores."""
    return decide(queued, running, capacity, now, gpu_quota=gpu_quota, quotas=quotas, default_quota=default_quota,
                  usage=usage).placements


def decide(
    queued: Iterable[QueuedJob],
    running: Iterable[RunningJob],
    capacity: CapacityLike,
    now: float,
    *,
    gpu_quota: int | Mapping[str | None, int] | None = None,
    quotas: Quotas | None = None,
    default_quota: Quota | None = None,
    usage: Mapping[str | None, float] | None = None,
    explain: bool = False,
) -> Decision:
    """Like :func:`schedule`, also telling the head job's reservation and the quota holds (for display).

    ``quotas``: per user (``QueuedJob.user``), what their running jobs may hold at once; a user
    not in it has ``default_quota``. ``gpu_quota`` (older): one GPU quota for all, or per user.
    ``usage``: per user, their recent usage, for fair share (missing: none). ``explain``: also
    tell the hold of every waiting job over its quota, not only of those the pass looked at."""
    book = _quota_book(gpu_quota, quotas, default_quota)
    jobs = queued if isinstance(queued, list) else list(queued)
    return _Pass(running, capacity, now, book).run(queue_order(jobs, usage), explain=explain, jobs=jobs)


def queue_order(queued: Iterable[QueuedJob], usage: Mapping[str | None, float] | None = None) -> list[QueuedJob]:
    """Highest priority first, then the least recent ``usage`` of the job's user (fair share),
    then submit order, then id."""
    # Stable sorts on single C-level keys, least significant first: half the time of
    # one sort on a key tuple built in Python.
    ordered = sorted(queued, key=attrgetter("id"))
    ordered.sort(key=attrgetter("order"))
    if usage and ordered:
        # the users' usage looked up and the sort keyed in C (map, a bound list method), not
        # a Python key function: 10,000 calls of one cost more than the rest of a full pass
        used = list(map(usage.get, map(attrgetter("user"), ordered), repeat(0.0)))
        if min(used) != max(used):
            ordered = list(map(ordered.__getitem__, sorted(range(len(ordered)), key=used.__getitem__)))
    ordered.sort(key=attrgetter("priority"), reverse=True)
    return ordered


class _QuotaBook:
    """Each user's quota, from the per-user table, then the default."""

    __slots__ = ("per_user", "default")

    def __init__(self, per_user: Quotas, default: Quota | None) -> None:
        self.per_user, self.default = per_user, default

    def of(self, user: str | None) -> Quota | None:
        return self.per_user.get(user, self.default)


def _quota_book(gpu_quota: int | Mapping[str | None, int] | None, quotas: Quotas | None,
                default: Quota | None) -> _QuotaBook | None:
    per_user: dict[str | None, Quota] = {}
    if isinstance(gpu_quota, int):
        default = Quota(gpus=gpu_quota, cpus=default.cpus if default else None)
    elif gpu_quota is not None:
        per_user = {u: Quota(gpus=g) for u, g in gpu_quota.items()}
    if quotas:
        per_user.update(quotas)
    if not per_user and not default:
        return None
    return _QuotaBook(per_user, default if default else None)


Shape = tuple[int, float, int, int, frozenset[tuple[str, str]]]


def _shape(job: QueuedJob) -> Shape:
    res = job.resources
    return res.gpus, res.cpus, res.memory, job.nodes, frozenset(job.labels.items()) if job.labels else frozenset()


class _Node:
    """One node's free pool during a pass."""

    __slots__ = ("index", "id", "labels", "total", "free_gpus", "cpus", "memory", "core_load")

    def __init__(self, index: int, node: NodeLike) -> None:
        self.index, self.id, self.labels, self.total = index, node.id, node.labels, node.total
        self.free_gpus = list(node.gpu_indices)
        self.cpus, self.memory = float(node.total.cpus), int(node.total.memory)
        self.core_load = [0.0] * (math.ceil(self.cpus - _EPS) if self.cpus > 0 else 0)

    def hold(self, res: Resources, s: NodeSlice) -> int:
        """Take what a running job's slice holds here; the number of this node's GPUs it held."""
        held = [g for g in s.gpus if g in self.free_gpus]
        for g in held:
            self.free_gpus.remove(g)
        self.cpus -= res.cpus
        self.memory -= res.memory
        share = 1.0 if res.cpus >= 1 - _EPS else res.cpus
        for c in s.cores:
            if 0 <= c < len(self.core_load):  # capacity may have shrunk since it was placed
                self.core_load[c] += share
        return len(held)

    def holds(self, gpus: int, cpus: float, memory: int) -> bool:
        return len(self.free_gpus) >= gpus and self.cpus + _EPS >= cpus and self.memory >= memory

    def fullness(self) -> tuple[int, float, int, int]:
        """Best fit sorts by this: the fullest node first."""
        return len(self.free_gpus), self.cpus, self.memory, self.index

    def take(self, res: Resources) -> NodeSlice:
        gpus = tuple(self.free_gpus[:res.gpus])
        del self.free_gpus[:res.gpus]
        self.cpus -= res.cpus
        self.memory -= res.memory
        return NodeSlice(self.id, gpus, self._take_cores(res.cpus))

    def _take_cores(self, cpus: float) -> tuple[int, ...]:
        load = self.core_load
        if cpus <= 0 or not load:
            return ()
        cores = range(len(load))
        if cpus < 1 - _EPS:
            room = [c for c in cores if load[c] + cpus <= 1 + _EPS]
            core = max(room, key=lambda c: (load[c], -c)) if room else min(cores, key=lambda c: (load[c], c))
            load[core] += cpus
            return (core,)
        chosen = sorted(sorted(cores, key=lambda c: (load[c], c))[:math.ceil(cpus - _EPS)])
        for c in chosen:
            load[c] += 1.0
        return tuple(chosen)


class _Pass:
    """One scheduling pass: the nodes' free pools, shrinking as jobs are placed."""

    def __init__(self, running: Iterable[RunningJob], capacity: CapacityLike, now: float,
                 quotas: _QuotaBook | None) -> None:
        self.now = now
        self.quotas = quotas
        self.held: dict[int, Hold] = {}
        self.nodes = [_Node(i, n) for i, n in enumerate(capacity.nodes)]
        by_id = {n.id: n for n in self.nodes}
        self.user_gpus: dict[str | None, int] = {}
        self.user_cpus: dict[str | None, float] = {}
        # (expected end, node index, gpus, cpus, memory) of every slice holding resources, for the reservation
        self.ends: list[tuple[float, int, int, float, int]] = []
        for r in running:
            self.user_gpus[r.user] = self.user_gpus.get(r.user, 0) + r.resources.gpus * len(r.slices)
            self.user_cpus[r.user] = self.user_cpus.get(r.user, 0.0) + r.resources.cpus * len(r.slices)
            for s in r.slices:
                node = by_id.get(s.node)
                if node is not None:  # else its node has left: nothing of ours to free
                    held = node.hold(r.resources, s)
                    self.ends.append((r.expected_end, node.index, held, r.resources.cpus, r.resources.memory))
        self.placements: list[Placement] = []
        self.reservation: Reservation | None = None
        self.shadow = 0.0
        self.extra: list[list[float]] = []  # per node index: [gpus, cpus, memory] spare at the shadow time
        self.matching: dict[frozenset[tuple[str, str]], list[_Node]] = {}
        self.fitting: dict[Shape, list[_Node]] = {}  # per shape, the nodes that held it when last asked
        self.last: list[_Node] = []  # the nodes of the latest placement
        self.stuck: set[Shape] = set()  # shapes that do not fit now (for the rest of the pass)
        self.stuck_extra: set[Shape] = set()  # shapes that do not fit now in the extra
        self.never: set[Shape] = set()  # shapes that would not fit on the empty cluster

    def run(self, ordered: list[QueuedJob], *, explain: bool = False, jobs: list[QueuedJob] | None = None) -> Decision:
        self._run(ordered, ordered if jobs is None else jobs)
        if explain and self.quotas is not None:
            placed = {p.job_id for p in self.placements}
            for job in ordered:
                if job.id not in placed and job.id not in self.held:
                    self._within_quota(job)
        return Decision(self.placements, self.reservation, self.held)

    def _run(self, ordered: list[QueuedJob], jobs: list[QueuedJob]) -> None:
        if not ordered:
            return
        # read in the order the jobs were made (``jobs``), which is the order they lie in memory:
        # in queue order, the scan is several times slower on a large queue
        demands = list(map(attrgetter("resources"), jobs))
        # Below any of these, no queued job can fit: the rest of the scan is moot.
        least = (min(map(attrgetter("gpus"), demands)), min(map(attrgetter("cpus"), demands)),
                 min(map(attrgetter("memory"), demands)))
        # the nodes that still hold the least demand; a placement can only remove the nodes it took
        open_nodes = {n.index for n in self.nodes if n.holds(*least)}
        if not open_nodes:
            # Nothing can start now (the common case with a long queue on a full
            # cluster): all that is left is the head's reservation, not a scan.
            for job in ordered:
                if self._within_quota(job):
                    self._reserve(job)
                    if self.reservation is not None:
                        break
            return
        for job in ordered:
            # Only a placement shrinks what is free, so only then can the scan end early.
            if self._consider(job):
                open_nodes.difference_update(n.index for n in self.last if not n.holds(*least))
                if not open_nodes:
                    break

    def _consider(self, job: QueuedJob) -> bool:
        """Place ``job`` if the rules allow; whether it was placed."""
        shape = _shape(job)
        chosen = None if shape in self.stuck else self._choose(job, shape)
        if chosen is None:
            self.stuck.add(shape)
            if self.reservation is None and self._within_quota(job):
                self._reserve(job)
            return False
        if not self._within_quota(job):
            return False
        if self.reservation is not None and self.now + job.max_runtime > self.shadow:
            # Outlives the reservation: only on what the head will not need then.
            chosen = None if shape in self.stuck_extra else self._choose(job, shape, spare=True)
            if chosen is None:
                self.stuck_extra.add(shape)
                return False
            res = job.resources
            for n in chosen:
                e = self.extra[n.index]
                e[0] -= res.gpus
                e[1] -= res.cpus
                e[2] -= res.memory
        self._place(job, chosen)
        return True

    def _matching(self, shape: Shape) -> list[_Node]:
        labels = shape[4]
        if not labels:
            return self.nodes
        found = self.matching.get(labels)
        if found is None:
            wanted = dict(labels)
            found = self.matching[labels] = [n for n in self.nodes if matches(n.labels, wanted)]
        return found

    def _choose(self, job: QueuedJob, shape: Shape, *, spare: bool = False) -> list[_Node] | None:
        """The nodes ``job`` would take now (the fullest that hold it), or None where too few do."""
        gpus, cpus, memory, count, _ = shape
        # A node that cannot hold a shape now will not later in the pass: look only at those that could.
        seen = self.fitting.get(shape)
        fit = self.fitting[shape] = [n for n in (self._matching(shape) if seen is None else seen)
                                     if n.holds(gpus, cpus, memory)]
        if spare:
            extra = self.extra
            fit = [n for n in fit if extra[n.index][0] >= gpus and extra[n.index][1] + _EPS >= cpus
                   and extra[n.index][2] >= memory]
        if len(fit) < count:
            return None
        if count == 1:
            return [min(fit, key=_Node.fullness)]
        return sorted(fit, key=_Node.fullness)[:count]

    def _within_quota(self, job: QueuedJob) -> bool:
        """Whether ``job`` fits in its user's quota now; where not, its hold is noted."""
        if self.quotas is None:
            return True
        quota = self.quotas.of(job.user)
        if quota is None:
            return True
        res = job.resources
        if quota.gpus is not None and res.gpus:
            used = self.user_gpus.get(job.user, 0)
            if used + res.gpus * job.nodes > quota.gpus:
                self.held[job.id] = Hold(job.user, "gpus", used, quota.gpus)
                return False
        if quota.cpus is not None and res.cpus:
            used_cpus = self.user_cpus.get(job.user, 0.0)
            if used_cpus + res.cpus * job.nodes > quota.cpus + _EPS:
                self.held[job.id] = Hold(job.user, "cpus", used_cpus, quota.cpus)
                return False
        return True

    def _place(self, job: QueuedJob, chosen: list[_Node]) -> None:
        res = job.resources
        end = self.now + job.max_runtime
        slices = []
        for n in chosen:
            slices.append(n.take(res))
            self.ends.append((end, n.index, res.gpus, res.cpus, res.memory))
        self.user_gpus[job.user] = self.user_gpus.get(job.user, 0) + res.gpus * len(chosen)
        self.user_cpus[job.user] = self.user_cpus.get(job.user, 0.0) + res.cpus * len(chosen)
        self.last = chosen
        self.placements.append(Placement(job.id, tuple(slices)))

    def _reserve(self, job: QueuedJob) -> None:
        """Find the head's shadow time by releasing running slices in order of expected end."""
        shape = _shape(job)
        gpus, cpus, memory, count, _ = shape
        if shape in self.never:
            return
        matching = self._matching(shape)
        if sum(1 for n in matching if job.resources.fits_in(n.total)) < count:
            # It cannot fit even on an empty cluster (capacity shrank, or nodes left, since it
            # was accepted): it must not block the queue behind it.
            self.never.add(shape)
            return
        free = [[len(n.free_gpus), n.cpus, n.memory] for n in self.nodes]
        wanted = {n.index for n in matching}
        fits = [i in wanted and _holds(free[i], gpus, cpus, memory) for i in range(len(free))]
        ready = sum(fits)
        if ready >= count:  # it fits now: the reservation is now
            self._reserve_at(job, self.now, free, fits)
            return
        for end, i, g, c, m in sorted(self.ends):
            f = free[i]
            f[0] += g
            f[1] += c
            f[2] += m
            if fits[i] or i not in wanted or not _holds(f, gpus, cpus, memory):
                continue
            fits[i] = True
            ready += 1
            if ready >= count:
                self._reserve_at(job, max(end, self.now), free, fits)
                return
        self.never.add(shape)  # only where running jobs hold more than the nodes have

    def _reserve_at(self, job: QueuedJob, shadow: float, free: list[list[float]], fits: list[bool]) -> None:
        res = job.resources
        # the nodes the head takes then: best fit, as when it starts
        head = sorted((i for i, ok in enumerate(fits) if ok), key=lambda i: (*free[i], i))[:job.nodes]
        for i in head:
            free[i][0] -= res.gpus
            free[i][1] -= res.cpus
            free[i][2] -= res.memory
        self.shadow, self.extra = shadow, free
        self.reservation = Reservation(job.id, shadow, tuple(self.nodes[i].id for i in head))


def _holds(free: list[float], gpus: int, cpus: float, memory: int) -> bool:
    return free[0] >= gpus and free[1] + _EPS >= cpus and free[2] >= memory


# -- what is used where (for display) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeUsage:
    node: NodeLike
    gpus: tuple[int, ...]  # the GPU indices running jobs hold here
    cpus: float
    memory: int
    jobs: tuple[int, ...]  # the running jobs with a slice here

    @property
    def free(self) -> Resources:
        total = self.node.total
        return Resources.model_construct(gpus=max(total.gpus - len(self.gpus), 0), cpus=max(total.cpus - self.cpus, 0),
                                         memory=max(total.memory - self.memory, 0))


def usage(capacity: CapacityLike, running: Iterable[RunningJob]) -> list[NodeUsage]:
    """Per node of ``capacity``, what ``running`` holds there (slices on nodes that left are not shown)."""
    here: dict[str, list[tuple[RunningJob, NodeSlice]]] = {n.id: [] for n in capacity.nodes}
    for r in running:
        for s in r.slices:
            if s.node in here:
                here[s.node].append((r, s))
    return [NodeUsage(n, tuple(sorted(g for _, s in here[n.id] for g in s.gpus)),
                      sum(r.resources.cpus for r, _ in here[n.id]), sum(r.resources.memory for r, _ in here[n.id]),
                      tuple(r.id for r, _ in here[n.id]))
            for n in capacity.nodes]
