"""The scheduling policy: which queued jobs start now, on which GPUs and cores. Pure; no I/O.

This module decides placement and nothing else; the scheduler loop feeds it the
store's view of the world and applies what it returns. Rules:

1. Queued jobs are considered by priority (highest first), then submit order.
2. A job starts when it fits in what is free now. GPUs are whole and given as
   specific indices; two jobs never share one.
3. EASY backfill: the first job that does not fit (the *head*) gets a
   reservation — the earliest time enough resources free up, judged from the
   running jobs' expected ends (start + max_runtime). A later job may start
   now only if it fits now and either ends before that time or leaves enough
   for the head at that time, so backfill never delays the head.
4. Optionally, a per-user GPU quota: a job that would take its user past the
   quota waits, without holding a reservation.
5. Cores are handed out like GPUs, as indices ``0 .. ceil(capacity cpus) - 1``:
   a job asking for ``c >= 1`` CPUs gets ``ceil(c)`` cores no running job
   holds, where there are that many (a job whose fraction rounds past the
   free cores shares its last one; its cgroup quota still holds it to ``c``);
   a job asking for less than one core shares one with other fractional jobs
   (the fullest that still has room). Fitting is judged on CPU counts, as
   before; cores only say where. Indices beyond the machine's real cores
   (a declared MODELYARD_CAPACITY) are mapped onto them by the supervisor.

Nomenclature: *free* is capacity minus what running jobs hold; the *shadow
time* is the head's reservation; *extra* is what will be left at the shadow
time once the head has what it needs — backfill that outlives the shadow time
must fit in it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Protocol

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.spec import DEFAULT_MAX_RUNTIME, Resources
from modelyard.jobs.units import format_size

_EPS = 1e-9  # CPU counts are floats; sums of 0.1s must not spuriously overflow


class CapacityLike(Protocol):
    """What the policy needs of a machine's capacity (``executors.capacity.Capacity`` is one)."""

    @property
    def total(self) -> Resources: ...

    @property
    def gpu_indices(self) -> Sequence[int]: ...


@dataclass(frozen=True, slots=True)
class QueuedJob:
    id: int
    resources: Resources
    priority: int = 0
    order: float = 0  # submit order: a sequence number or creation time; smaller is earlier
    max_runtime: float = DEFAULT_MAX_RUNTIME
    user: str | None = None


@dataclass(frozen=True, slots=True)
class RunningJob:
    id: int
    resources: Resources
    gpus: Sequence[int]  # the indices it holds
    expected_end: float  # started + max_runtime (Unix time)
    user: str | None = None
    cores: Sequence[int] = ()  # the core indices it holds


@dataclass(frozen=True, slots=True)
class Placement:
    job_id: int
    gpus: tuple[int, ...]
    cores: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Reservation:
    """The head job's promise: it starts no later than ``start`` (given the expected ends)."""

    job_id: int
    start: float


@dataclass(frozen=True, slots=True)
class Decision:
    placements: list[Placement]
    reservation: Reservation | None


def check_satisfiable(resources: Resources, capacity: CapacityLike, *, gpu_quota: int | None = None) -> None:
    """Raise UNSATISFIABLE when a job asking for ``resources`` could never start here."""
    total = capacity.total
    if resources.gpus > total.gpus:
        raise _unsatisfiable("gpus", f"{resources.gpus} GPU(s)", f"{total.gpus}")
    if gpu_quota is not None and resources.gpus > gpu_quota:
        raise ModelyardError(
            ErrorCode.UNSATISFIABLE,
            f"asks for {resources.gpus} GPU(s) but the per-user GPU quota is {gpu_quota}",
            field="resources.gpus",
        )
    if resources.cpus > total.cpus + _EPS:
        raise _unsatisfiable("cpus", f"{resources.cpus:g} CPU(s)", f"{total.cpus:g}")
    if resources.memory > total.memory:
        raise _unsatisfiable("memory", format_size(resources.memory), format_size(total.memory))


def _unsatisfiable(field: str, asked: str, total: str) -> ModelyardError:
    return ModelyardError(
        ErrorCode.UNSATISFIABLE,
        f"asks for {asked} but this platform has {total} {field} in total",
        field=f"resources.{field}",
    )


def schedule(
    queued: Iterable[QueuedJob],
    running: Iterable[RunningJob],
    capacity: CapacityLike,
    now: float,
    *,
    gpu_quota: int | Mapping[str | None, int] | None = None,
) -> list[Placement]:
    """The jobs to start now, in start order, with their GPUs."""
    return decide(queued, running, capacity, now, gpu_quota=gpu_quota).placements


def decide(
    queued: Iterable[QueuedJob],
    running: Iterable[RunningJob],
    capacity: CapacityLike,
    now: float,
    *,
    gpu_quota: int | Mapping[str | None, int] | None = None,
) -> Decision:
    """Like :func:`schedule`, also telling the head job's reservation (for display)."""
    return _Pass(list(running), capacity, now, gpu_quota).run(queue_order(queued))


def queue_order(queued: Iterable[QueuedJob]) -> list[QueuedJob]:
    """Highest priority first, then submit order, then id."""
    # Stable sorts on single C-level keys, least significant first: half the time of
    # one sort on a key tuple built in Python.
    ordered = sorted(queued, key=attrgetter("id"))
    ordered.sort(key=attrgetter("order"))
    ordered.sort(key=attrgetter("priority"), reverse=True)
    return ordered


def _core_load(running: Sequence[RunningJob], total_cpus: float) -> list[float]:
    """Per core index, how much of it running jobs hold (1.0 = a whole job's own core)."""
    load = [0.0] * (math.ceil(total_cpus - _EPS) if total_cpus > 0 else 0)
    for r in running:
        share = 1.0 if r.resources.cpus >= 1 - _EPS else r.resources.cpus
        for c in r.cores:
            if 0 <= c < len(load):  # capacity may have shrunk since it was placed
                load[c] += share
    return load


class _Pass:
    """One scheduling pass: the free pool, shrinking as jobs are placed."""

    def __init__(self, running: list[RunningJob], capacity: CapacityLike, now: float,
                 gpu_quota: int | Mapping[str | None, int] | None) -> None:
        self.now = now
        self.quota = gpu_quota
        total = capacity.total
        held = {g for r in running for g in r.gpus}
        self.free_gpus = sorted(g for g in capacity.gpu_indices if g not in held)
        self.free_cpus = total.cpus - sum(r.resources.cpus for r in running)
        self.free_memory = total.memory - sum(r.resources.memory for r in running)
        self.user_gpus: dict[str | None, int] = {}
        self.core_load = _core_load(running, total.cpus)
        for r in running:
            self.user_gpus[r.user] = self.user_gpus.get(r.user, 0) + r.resources.gpus
        # (expected end, gpus, cpus, memory) of everything holding resources, for the reservation
        self.ends = [(r.expected_end, r.resources.gpus, r.resources.cpus, r.resources.memory) for r in running]
        self.placements: list[Placement] = []
        self.reservation: Reservation | None = None
        self.shadow = 0.0
        self.extra = (0, 0.0, 0)  # gpus, cpus, memory spare at the shadow time

    def run(self, ordered: list[QueuedJob]) -> Decision:
        if ordered:
            demands = list(map(attrgetter("resources"), ordered))
            # Below any of these, no queued job can fit: the rest of the scan is moot.
            least = (min(map(attrgetter("gpus"), demands)), min(map(attrgetter("cpus"), demands)),
                     min(map(attrgetter("memory"), demands)))
            if self._exhausted(least):
                # Nothing can start now (the common case with a long queue on a full
                # machine): all that is left is the head's reservation, not a scan.
                for job in ordered:
                    if self._within_quota(job):
                        self._reserve(job)
                        if self.reservation is not None:
                            break
                return Decision(self.placements, self.reservation)
            for job in ordered:
                # Only a placement shrinks what is free, so only then can the scan end early.
                if self._consider(job) and self._exhausted(least):
                    break
        return Decision(self.placements, self.reservation)

    def _exhausted(self, least: tuple[int, float, int]) -> bool:
        return (len(self.free_gpus) < least[0] or self.free_cpus + _EPS < least[1]
                or self.free_memory < least[2])

    def _consider(self, job: QueuedJob) -> bool:
        """Place ``job`` if the rules allow; whether it was placed."""
        res = job.resources
        fits_now = (res.gpus <= len(self.free_gpus) and res.cpus <= self.free_cpus + _EPS
                    and res.memory <= self.free_memory)
        if not (fits_now or self.reservation is None) or not self._within_quota(job):
            return False
        if self.reservation is None:
            if not fits_now:
                self._reserve(job)
                return False
        elif self.now + job.max_runtime > self.shadow:
            # Outlives the reservation: only on what the head will not need then.
            g, c, m = self.extra
            if res.gpus > g or res.cpus > c + _EPS or res.memory > m:
                return False
            self.extra = (g - res.gpus, c - res.cpus, m - res.memory)
        self._place(job)
        return True

    def _within_quota(self, job: QueuedJob) -> bool:
        if self.quota is None or job.resources.gpus == 0:
            return True
        limit = self.quota if isinstance(self.quota, int) else self.quota.get(job.user)
        return limit is None or self.user_gpus.get(job.user, 0) + job.resources.gpus <= limit

    def _place(self, job: QueuedJob) -> None:
        res = job.resources
        gpus = tuple(self.free_gpus[:res.gpus])
        del self.free_gpus[:res.gpus]
        self.free_cpus -= res.cpus
        self.free_memory -= res.memory
        self.user_gpus[job.user] = self.user_gpus.get(job.user, 0) + res.gpus
        self.ends.append((self.now + job.max_runtime, res.gpus, res.cpus, res.memory))
        self.placements.append(Placement(job.id, gpus, self._take_cores(res.cpus)))

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

    def _reserve(self, job: QueuedJob) -> None:
        """Find the head's shadow time by releasing running jobs in order of expected end."""
        res = job.resources
        gpus, cpus, memory = len(self.free_gpus), self.free_cpus, self.free_memory
        for end, g, c, m in sorted(self.ends):
            gpus, cpus, memory = gpus + g, cpus + c, memory + m
            if res.gpus <= gpus and res.cpus <= cpus + _EPS and res.memory <= memory:
                self.shadow = max(end, self.now)
                self.extra = (gpus - res.gpus, cpus - res.cpus, memory - res.memory)
                self.reservation = Reservation(job.id, self.shadow)
                return
        # It cannot fit even on an empty machine (capacity shrank since it was
        # accepted): it must not block the queue behind it.
