"""Quotas of GPUs and CPUs per user, fair share within a priority, and the decayed usage it orders by."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import ModelyardError
from modelyard.executors.capacity import Capacity, GpuInfo
from modelyard.jobs.nodes import LOCAL_NODE, NodeSlice
from modelyard.jobs.spec import Resources
from modelyard.scheduler import fairshare
from modelyard.scheduler.policy import Hold, Quota, QueuedJob, RunningJob, check_satisfiable, decide, queue_order

NOW = 1_000_000.0
DAY = 86400.0


def machine(gpus: int = 0, cpus: float = 8) -> Capacity:
    infos = tuple(GpuInfo(index=i, name="test", uuid=None, memory_total=0) for i in range(gpus))
    return Capacity.one(Resources(gpus=gpus, cpus=cpus, memory=0), infos)


def job(id: int, user: str, gpus: int = 0, cpus: float = 1, *, priority: int = 0, max_runtime: float = 3600,
        nodes: int = 1) -> QueuedJob:
    return QueuedJob(id, Resources(gpus=gpus, cpus=cpus, memory=0), priority=priority, order=id,
                     max_runtime=max_runtime, user=user, nodes=nodes)


def run(id: int, user: str, gpus: tuple[int, ...] = (), cpus: float = 1, *, ends_in: float = 3600,
        cores: tuple[int, ...] = ()) -> RunningJob:
    return RunningJob(id, Resources(gpus=len(gpus), cpus=cpus, memory=0), (NodeSlice(LOCAL_NODE, gpus, cores),),
                      NOW + ends_in, user)


def ids(decision) -> list[int]:  # type: ignore[no-untyped-def]
    return [p.job_id for p in decision.placements]


# -- quotas ---------------------------------------------------------------------------------------

def test_a_user_at_their_gpu_quota_waits_with_the_reason_and_others_start() -> None:
    busy = [run(10, "alice", gpus=(0, 1, 2, 3))]
    d = decide([job(1, "alice", gpus=1), job(2, "bob", gpus=1)], busy, machine(gpus=8), NOW,
               quotas={"alice": Quota(gpus=4)})
    assert ids(d) == [2]
    assert d.held == {1: Hold("alice", "gpus", 4, 4)}


def test_cpu_quota_counts_nodes_times_per_node_cpus() -> None:
    d = decide([job(1, "alice", cpus=4), job(2, "alice", cpus=4), job(3, "alice", cpus=1)], [run(10, "alice", cpus=8)],
               machine(cpus=32), NOW, quotas={"alice": Quota(cpus=13)})
    assert ids(d) == [1, 3]  # 8 + 4 = 12; the second 4 would make 16; 1 more makes 13
    assert d.held[2] == Hold("alice", "cpus", 12, 13)


def test_the_default_quota_applies_to_users_without_their_own() -> None:
    jobs = [job(1, "alice", gpus=2), job(2, "bob", gpus=2)]
    d = decide(jobs, [], machine(gpus=8), NOW, quotas={"alice": Quota(gpus=4)}, default_quota=Quota(gpus=1))
    assert ids(d) == [1]
    assert d.held[2].limit == 1


def test_explain_tells_the_hold_of_jobs_the_pass_did_not_reach() -> None:
    # the machine is full: the pass stops at the head; explain still names alice's hold
    busy = [run(10, "alice", gpus=(0,)), run(11, "bob", gpus=(1,))]
    jobs = [job(1, "bob", gpus=1), job(2, "alice", gpus=1)]
    assert decide(jobs, busy, machine(gpus=2), NOW, quotas={"alice": Quota(gpus=1)}).held == {}
    d = decide(jobs, busy, machine(gpus=2), NOW, quotas={"alice": Quota(gpus=1)}, explain=True)
    assert d.held == {2: Hold("alice", "gpus", 1, 1)}


def test_a_quota_smaller_than_the_ask_is_unsatisfiable_at_submit() -> None:
    with pytest.raises(ModelyardError, match="per-user CPU quota is 4") as err:
        check_satisfiable(Resources(cpus=3), machine(cpus=16), nodes=2, quota=Quota(cpus=4))
    assert err.value.field == "resources.cpus"
    with pytest.raises(ModelyardError, match="per-user GPU quota is 1"):
        check_satisfiable(Resources(gpus=2), machine(gpus=4), quota=Quota(gpus=1))
    check_satisfiable(Resources(gpus=1, cpus=4), machine(gpus=4, cpus=8), quota=Quota(gpus=1, cpus=4))


def test_quota_of_merges_own_values_over_the_default() -> None:
    q = Quota.of({"gpus": 2, "cpus": None, "queued": None}, {"gpus": 4, "cpus": 16, "queued": 100})
    assert q == Quota(gpus=2, cpus=16.0, queued=100)
    assert not Quota.of({}, {})


# -- fair share -----------------------------------------------------------------------------------

def test_within_a_priority_the_least_used_user_goes_first_then_submit_order() -> None:
    jobs = [job(1, "alice"), job(2, "alice"), job(3, "bob"), job(4, "carol", priority=1), job(5, "bob")]
    order = [j.id for j in queue_order(jobs, {"alice": 12.3, "bob": 0.5, "carol": 99})]
    assert order == [4, 3, 5, 1, 2]  # priority still first; ties (none here) by submit order
    assert [j.id for j in queue_order(jobs, {"alice": 1.0, "bob": 1.0})] == [4, 1, 2, 3, 5]


def test_fair_share_gives_the_free_slot_to_the_least_used_user() -> None:
    queue = [job(i, "alice", gpus=1) for i in range(1, 1001)] + [job(5000, "bob", gpus=1)]
    busy = [run(100 + g, "alice", gpus=(g,)) for g in range(7)]  # one GPU of eight is free
    d = decide(queue, busy, machine(gpus=8, cpus=64), NOW, usage={"alice": 50.0, "bob": 0.0})
    assert ids(d) == [5000]


def test_decayed_usage_halves_every_half_life() -> None:
    h = 7 * DAY
    one_hour_now = fairshare.Span("a", 1, 1, 1, NOW - 3600, NOW)
    assert fairshare.decayed_hours(one_hour_now, NOW, h) == pytest.approx(1.0, rel=1e-2)
    week_ago = fairshare.Span("a", 1, 1, 1, NOW - h - 3600, NOW - h)
    assert fairshare.decayed_hours(week_ago, NOW, h) == pytest.approx(0.5, rel=1e-2)
    # nodes x GPUs; a CPU-only job charges CPU_WEIGHT per CPU-hour; a running one up to now
    assert fairshare.decayed_hours(fairshare.Span("a", 2, 8, 3, NOW - 3600, None), NOW, h) == \
        pytest.approx(6.0, rel=1e-2)
    cpu = fairshare.decayed_hours(fairshare.Span("a", 0, 8, 1, NOW - 3600, NOW), NOW, h)
    assert cpu == pytest.approx(8 * fairshare.CPU_WEIGHT, rel=1e-2)
    assert fairshare.usage([one_hour_now, week_ago], NOW, h) == {"a": pytest.approx(1.5, rel=1e-2)}


@settings(max_examples=200, deadline=None)
@given(start=st.floats(0, 30 * DAY), length=st.floats(0, 30 * DAY), split=st.floats(0, 1))
def test_decay_is_additive_over_a_split_run(start: float, length: float, split: float) -> None:
    h = 7 * DAY
    a, m, b = NOW - start - length, NOW - start - length * (1 - split), NOW - start
    whole = fairshare.decayed_hours(fairshare.Span("u", 1, 1, 1, a, b), NOW, h)
    parts = sum(fairshare.decayed_hours(fairshare.Span("u", 1, 1, 1, x, y), NOW, h) for x, y in ((a, m), (m, b)))
    assert math.isclose(whole, parts, rel_tol=1e-6, abs_tol=1e-9)
    assert 0 <= whole <= length / 3600 + 1e-9


# -- properties -----------------------------------------------------------------------------------

USERS = ["alice", "bob", "carol"]
asks = st.builds(Resources, gpus=st.integers(0, 3), cpus=st.sampled_from([0.5, 1, 2, 4]), memory=st.just(0))


@st.composite
def shared_worlds(draw: st.DrawFn) -> tuple[list[QueuedJob], list[RunningJob], Capacity, dict, dict]:
    cap = machine(gpus=draw(st.integers(0, 8)), cpus=draw(st.sampled_from([4, 8, 16])))
    free_gpus, cpus = list(cap.gpu_indices), cap.total.cpus
    busy = []
    for i, (res, user) in enumerate(draw(st.lists(st.tuples(asks, st.sampled_from(USERS)), max_size=6))):
        if res.gpus <= len(free_gpus) and res.cpus <= cpus:
            gpus, free_gpus, cpus = tuple(free_gpus[:res.gpus]), free_gpus[res.gpus:], cpus - res.cpus
            busy.append(RunningJob(1000 + i, res, (NodeSlice(LOCAL_NODE, gpus),), NOW + draw(st.integers(1, 9000)),
                                   user))
    jobs = [QueuedJob(i, res, priority=draw(st.integers(0, 1)), order=i, max_runtime=draw(st.integers(1, 9000)),
                      user=draw(st.sampled_from(USERS)))
            for i, res in enumerate(draw(st.lists(asks, max_size=30)))]
    quotas = {u: Quota(gpus=draw(st.one_of(st.none(), st.integers(0, 6))),
                       cpus=draw(st.one_of(st.none(), st.sampled_from([1.0, 2.5, 6.0]))))
              for u in draw(st.lists(st.sampled_from(USERS), unique=True))}
    usage = {u: draw(st.floats(0, 100)) for u in draw(st.lists(st.sampled_from(USERS), unique=True))}
    return jobs, busy, cap, quotas, usage


@settings(max_examples=120, deadline=None)
@given(shared_worlds())
def test_quotas_are_never_exceeded_and_no_gpu_is_shared(world) -> None:  # type: ignore[no-untyped-def]
    jobs, busy, cap, quotas, usage = world
    d = decide(jobs, busy, cap, NOW, quotas=quotas, usage=usage)
    by_id = {j.id: j for j in jobs}
    held = [g for r in busy for g in r.slices[0].gpus] + [g for p in d.placements for g in p.gpus]
    assert len(held) == len(set(held)), "a GPU is shared"
    for user, q in quotas.items():
        before_g = sum(r.resources.gpus for r in busy if r.user == user)
        before_c = sum(r.resources.cpus for r in busy if r.user == user)
        new = [by_id[p.job_id].resources for p in d.placements if by_id[p.job_id].user == user]
        if q.gpus is not None and any(r.gpus for r in new):
            assert before_g + sum(r.gpus for r in new) <= q.gpus
        if q.cpus is not None and new:
            assert before_c + sum(r.cpus for r in new) <= q.cpus + 1e-9
    for job_id, hold in d.held.items():
        assert job_id not in {p.job_id for p in d.placements}
        assert hold.user == by_id[job_id].user


@settings(max_examples=120, deadline=None)
@given(shared_worlds())
def test_fair_share_backfill_never_delays_the_head(world) -> None:  # type: ignore[no-untyped-def]
    jobs, busy, cap, _, usage = world
    d = decide(jobs, busy, cap, NOW, usage=usage)
    if d.reservation is None:
        return
    by_id = {j.id: j for j in jobs}
    head = by_id[d.reservation.job_id].resources
    # replay the ends: at the shadow time, what is left once every job still running then
    # (the running ones and the new placements that outlive it) has its share, holds the head
    holders = [(r.expected_end, r.resources) for r in busy] + [
        (NOW + by_id[p.job_id].max_runtime, by_id[p.job_id].resources) for p in d.placements]
    at = d.reservation.start
    still = [res for end, res in holders if end > at]
    assert sum(r.gpus for r in still) + head.gpus <= cap.total.gpus
    assert sum(r.cpus for r in still) + head.cpus <= cap.total.cpus + 1e-9


@settings(max_examples=150, deadline=None)
@given(many=st.integers(1, 1000), ask=st.integers(1, 2), mine=st.floats(0, 10), theirs=st.floats(0, 10),
       priority=st.integers(-1, 1))
def test_one_users_many_jobs_cannot_starve_a_less_used_users_one(many: int, ask: int, mine: float, theirs: float,
                                                                  priority: int) -> None:
    """Bob's single job starts in the first slot that frees once bob is the less used, whatever
    alice queued before it."""
    bob_usage, alice_usage = min(mine, theirs), max(mine, theirs) + 1e-3
    cap = machine(gpus=4, cpus=64)
    full = [run(100 + g, "alice", gpus=(g,), ends_in=600 * (g + 1)) for g in range(4)]
    queue = [job(i, "alice", gpus=1, priority=priority) for i in range(many)] + \
        [job(10_000, "bob", gpus=ask, priority=priority)]
    usage = {"alice": alice_usage, "bob": bob_usage}
    assert ids(decide(queue, full, cap, NOW, usage=usage)) == []
    # time passes: the running jobs end one by one; bob's job is placed as soon as it fits
    for freed in range(1, 5):
        d = decide(queue, full[freed:], cap, NOW + 600 * freed, usage=usage)
        if freed >= ask:
            assert ids(d)[0] == 10_000
            return
        assert 10_000 not in ids(d) and d.reservation is not None and d.reservation.job_id == 10_000
        assert ids(d) == []  # nothing of alice's jumps ahead on the freed GPU: it would delay bob
