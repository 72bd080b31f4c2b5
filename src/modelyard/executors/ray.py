"""The Ray executor: each node rank's supervisor in a detached, named actor on the node the policy chose.

The server joins the cluster as a driver (``MODELYARD_RAY_ADDRESS``). An
attempt's actors are named ``modelyard-JOB-ATTEMPT-RANK`` in the namespace
``modelyard``, so a restarted server finds them again by name, and hold the
attempt's CPUs, GPUs and memory on exactly the node the policy chose (node
affinity, not soft: Ray and the policy never disagree about where). A job on
several nodes reserves them together: one placement group, one bundle per
node rank, each bundle pinned to its node by the ``ray.io/node-id`` label,
STRICT_SPREAD. Rank 0's actor names the rendezvous (its node's address and a
free port) before any supervisor starts. The actors themselves are
ray_actor.py's: they run the same supervisor as the local executor.

Capacity is what Ray reports of its alive nodes (``ray.nodes()``, read at most
every ``CAPACITY_TTL`` seconds): GPUs as Ray counts them, CPUs, memory, and
labels from the node's custom resources (``gpu_h100: 1`` is ``gpu_h100=1``)
and its Ray labels (``ray start --labels``; Ray's own ``ray.io/`` ones left out).

A notebook console (jobs/console.py) listens on its node's address from that
table, written into its launch here; the proxy asks the attempt's actor who
listens on the console's port on that node (``console_listener``).
"""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from modelyard.config import Settings
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.executors.base import ConsoleListener, Found, Launch, Recovery
from modelyard.executors.capacity import Capacity, GpuInfo, Node
from modelyard.jobs import console
from modelyard.jobs.launch import LaunchSpec
from modelyard.jobs.nodes import LOCAL_NODE
from modelyard.jobs.spec import Resources
from modelyard.db.records import Attempt

log = logging.getLogger("modelyard.executor.ray")

NAMESPACE = "modelyard"
ADDRESS_FIELD = "MODELYARD_RAY_ADDRESS"
CAPACITY_TTL = 1.0  # seconds a read of the cluster's nodes is reused (the loop asks every pass)
START_TIMEOUT = 60.0  # for the actors to be placed and their workers up (a worker is a fresh interpreter)
CONNECT_TIMEOUT = 5.0  # for the head's GCS port to accept a connection
CALL_TIMEOUT = 15.0  # for a call to a running actor (kill waits for the processes to be gone)
LISTENER_TIMEOUT = 5.0  # for an actor to say who listens on its console's port (the proxy waits on it)
MAX_HANDLES = 256  # console actors' handles kept, so a proxied request costs one call, not a name lookup too
# Resources Ray keeps for itself: anything else a node declares is a label
_BUILTIN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_BUILTIN_PREFIXES = ("node:", "accelerator_type:")
_RAY_LABEL_PREFIX = "ray.io/"


def actor_name(job_id: int | str, attempt: int, rank: int) -> str:
    return f"modelyard-{job_id}-{attempt}-{rank}"


def node_from_ray(info: Mapping[str, Any]) -> Node:
    """One entry of ``ray.nodes()`` as a schedulable node."""
    res: Mapping[str, float] = info.get("Resources") or {}
    gpus = int(res.get("GPU", 0))
    model = next((k.removeprefix("accelerator_type:") for k in res if k.startswith("accelerator_type:")),
                 "declared by Ray")
    labels = {k: _amount(v) for k, v in res.items()
              if k not in _BUILTIN and not k.startswith(_BUILTIN_PREFIXES)}
    labels.update({k: str(v) for k, v in (info.get("Labels") or {}).items() if not k.startswith(_RAY_LABEL_PREFIX)})
    return Node(
        id=str(info["NodeID"]),
        total=Resources.model_construct(gpus=gpus, cpus=float(res.get("CPU", 0)), memory=int(res.get("memory", 0))),
        gpus=tuple(GpuInfo(index=i, name=model, uuid=None, memory_total=0) for i in range(gpus)),
        labels=labels, address=info.get("NodeManagerAddress"),
    )


def _check_reachable(address: str) -> None:
    """A GCS address that does not answer fails now: ray.init would retry it for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise ModelyardError(ErrorCode.UNAVAILABLE, f"cannot reach the Ray cluster at {ADDRESS_FIELD}={address}: "
                             f"{e.strerror or e}", field=ADDRESS_FIELD) from None


def _amount(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class RayExecutor:
    name = "ray"

    def __init__(self, settings: Settings) -> None:
        try:
            import ray
        except ImportError:
            raise ModelyardError(ErrorCode.INVALID, "MODELYARD_EXECUTOR=ray needs Ray: pip install 'modelyard[ray]'",
                                 field="MODELYARD_EXECUTOR") from None
        self.ray = ray
        self.address = settings.ray_address
        _check_reachable(self.address)
        try:
            # log_to_driver off: the actors' output is the supervisors', which reach the server as reports
            ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False, ignore_reinit_error=True,
                     configure_logging=False)
        except Exception as e:  # ConnectionError, or RuntimeError for "no cluster found" with "auto"
            raise ModelyardError(ErrorCode.UNAVAILABLE, f"cannot reach the Ray cluster at {ADDRESS_FIELD}="
                                 f"{self.address}: {e}", field=ADDRESS_FIELD) from None
        from modelyard.executors.ray_actor import SupervisorActor

        self._actor_class = ray.remote(SupervisorActor)
        self._capacity: Capacity | None = None
        self._read_at = 0.0
        self._handles: dict[tuple[int, int], Any] = {}

    # -- capacity -----------------------------------------------------------------------------

    def capacity(self) -> Capacity:
        now = time.monotonic()
        if self._capacity is None or now - self._read_at > CAPACITY_TTL:
            try:
                nodes = [node_from_ray(n) for n in self.ray.nodes() if n.get("Alive")]
            except Exception as e:  # the GCS unreachable for now: the nodes as last seen, until it answers
                if self._capacity is None:
                    raise
                log.warning("cannot read the cluster's nodes: %s", e)
                return self._capacity
            self._capacity = Capacity(tuple(sorted(nodes, key=lambda n: n.id)))
            self._read_at = now
        return self._capacity

    # -- start ---------------------------------------------------------------------------------

    def start(self, launch: Launch) -> str:
        specs = tuple(self._console_host(s) for s in launch.specs)
        group = self._reserve(specs) if len(specs) > 1 else None
        names = [actor_name(s.job_id, s.attempt, s.distributed.node_rank) for s in specs]
        actors: list[Any] = []
        try:
            for index, spec in enumerate(specs):
                actors.append(self._create(spec, names[index], group, index))
            where = self.ray.get([a.where.remote() for a in actors], timeout=START_TIMEOUT)
            specs = _with_rendezvous(specs, where[0]) if len(specs) > 1 else specs
            group_name = _group_name(specs[0]) if group is not None else None
            self.ray.get([a.start.remote(s.model_dump_json(), *((group_name, names[1:]) if i == 0 else ()))
                          for i, (a, s) in enumerate(zip(actors, specs))], timeout=START_TIMEOUT)
        except Exception:
            self._end(actors, group)
            raise
        return orjson.dumps({"actors": names, "group": group_name}).decode()

    def _console_host(self, spec: LaunchSpec) -> LaunchSpec:
        """A console's launch with its node's address to listen on: the one the proxy will connect to."""
        # no node named: it stays on loopback, where the proxy (console_listener) will not go
        if console.HOST_VAR not in spec.env or spec.distributed.node_id == LOCAL_NODE:
            return spec
        host = self.node_address(spec.distributed.node_id)
        return spec.model_copy(update={"env": {**spec.env, console.HOST_VAR: host}})

    def node_address(self, node_id: str) -> str:
        """The node's address in Ray's node table (``NodeManagerAddress``)."""
        for fresh in (False, True):  # a node added since the last read is in a fresh one
            if fresh:
                self._read_at = 0.0
            for node in self.capacity().nodes:
                if node.id == node_id and node.address:
                    return node.address
        raise ModelyardError(ErrorCode.UNAVAILABLE, f"Ray node {node_id} is not among the cluster's alive nodes")

    def console_listener(self, attempt: Attempt, port: int) -> ConsoleListener:
        """Where the attempt's console listens (its node's address) and who holds ``port`` there, asked
        of its actor: the server cannot read another machine's /proc."""
        node = attempt.slices[0].node if attempt.slices else LOCAL_NODE
        if node == LOCAL_NODE:
            raise ModelyardError(ErrorCode.UNAVAILABLE, f"job {attempt.job_id}'s console has no Ray node recorded")
        host = self.node_address(node)
        key = (attempt.job_id, attempt.number)
        try:
            actor = self._handles.get(key)
            if actor is None:
                if len(self._handles) >= MAX_HANDLES:
                    self._handles.clear()
                actor = self._handles[key] = self.ray.get_actor(actor_name(*key, 0), namespace=NAMESPACE)
            found = self.ray.get(actor.listeners.remote(port), timeout=LISTENER_TIMEOUT)
        except Exception as e:  # the actor gone (ValueError), dead, or its node unreachable
            self._handles.pop(key, None)
            raise ModelyardError(ErrorCode.UNAVAILABLE, f"cannot ask the node of job {attempt.job_id} who listens "
                                 f"on its console's port: {type(e).__name__}") from None
        if found["uids"] is None:
            raise ModelyardError(ErrorCode.UNAVAILABLE, "cannot tell who listens on the console's port on its node")
        return ConsoleListener(host=host, uids=frozenset(found["uids"]), job_uid=int(found["job_uid"]))

    def _create(self, spec: LaunchSpec, name: str, group: Any, index: int) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

        if group is not None:
            strategy: Any = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index)
        elif spec.distributed.node_id != LOCAL_NODE:
            strategy = NodeAffinitySchedulingStrategy(spec.distributed.node_id, soft=False)
        else:  # no node named (a launch built without a node-aware placement): wherever Ray finds room
            strategy = "DEFAULT"
        options: dict[str, Any] = {
            "name": name, "namespace": NAMESPACE, "lifetime": "detached", "max_restarts": 0,
            "num_cpus": spec.sandbox.cpus, "num_gpus": len(spec.gpus), "scheduling_strategy": strategy,
        }
        if spec.sandbox.memory:
            options["memory"] = spec.sandbox.memory
        return self._actor_class.options(**options).remote()

    def _reserve(self, specs: Sequence[LaunchSpec]) -> Any:
        """One placement group for the attempt's nodes, each bundle on its chosen node, all or none."""
        from ray.util.placement_group import NODE_ID_LABEL_KEY, placement_group

        bundles = [_bundle(s) for s in specs]
        group = placement_group(
            bundles, strategy="STRICT_SPREAD", lifetime="detached",
            name=_group_name(specs[0]),
            bundle_label_selector=[{NODE_ID_LABEL_KEY: s.distributed.node_id} for s in specs])
        try:
            self.ray.get(group.ready(), timeout=START_TIMEOUT)
        except Exception:
            self._remove_group(group)
            raise
        return group

    # -- watch, stop, kill ----------------------------------------------------------------------

    def _actors(self, attempt: Attempt) -> list[Any | None]:
        """The attempt's actors by name, rank 0 first; None for one that is gone."""
        found = []
        for rank in range(attempt.nnodes):
            try:
                found.append(self.ray.get_actor(actor_name(attempt.job_id, attempt.number, rank), namespace=NAMESPACE))
            except ValueError:  # no live actor has that name
                found.append(None)
        return found

    def alive(self, attempt: Attempt) -> bool | None:
        if not attempt.handle:
            return None  # placed, not launched yet
        try:
            return all(a is not None for a in self._actors(attempt))
        except Exception as e:  # the GCS unreachable: cannot tell (the heartbeat timeout still holds)
            log.warning("job %s attempt %s: cannot look up its actors: %s", attempt.job_id, attempt.number, e)
            return None

    def cancel(self, attempt: Attempt) -> None:
        for actor in self._actors(attempt):
            if actor is not None:
                actor.terminate.remote()  # the supervisor stops its command and reports; nothing to wait for

    def kill(self, attempt: Attempt) -> bool:
        """Every rank's supervisor and command killed through its actor, then the actor; False where an
        actor was gone already (its supervisor, its parent gone, kills its command itself)."""
        reached = True
        actors = self._actors(attempt)
        for actor in actors:
            if actor is None:
                reached = False
                continue
            try:
                self.ray.get(actor.kill.remote(), timeout=CALL_TIMEOUT)
            except Exception as e:  # dead meanwhile, or its node unreachable
                log.warning("job %s attempt %s: could not kill through its actor: %s", attempt.job_id, attempt.number, e)
                reached = False
        self._end([a for a in actors if a is not None], self._group(attempt))
        return reached

    def recover(self, attempts: Sequence[Attempt]) -> list[Recovery]:
        found = []
        for attempt in attempts:
            actors = self._actors(attempt)
            if not attempt.handle:
                # the server stopped inside start(): whatever it made of the attempt goes, and it is placed again
                self._end([a for a in actors if a is not None], None)
                found.append(Recovery(attempt, Found.REQUEUE, "the server stopped before its supervisor was started"))
            elif all(a is not None for a in actors):
                found.append(Recovery(attempt, Found.REATTACH))
            else:
                gone = [r for r, a in enumerate(actors) if a is None]
                found.append(Recovery(attempt, Found.LOST, f"the Ray actor of node rank {', '.join(map(str, gone))} "
                                      "was gone when the server started"))
        return found

    def close(self) -> None:
        """Leave the cluster; the detached actors, and their supervisors, go on."""
        self.ray.shutdown()

    # -- helpers --------------------------------------------------------------------------------

    def _group(self, attempt: Attempt) -> Any:
        if not attempt.handle:
            return None
        name = orjson.loads(attempt.handle).get("group")
        if not name:
            return None
        try:
            return self.ray.util.get_placement_group(name)
        except ValueError:  # removed already (rank 0's actor removes it as it ends)
            return None

    def _end(self, actors: Sequence[Any], group: Any) -> None:
        for actor in actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception as e:  # gone already
                log.debug("ray.kill: %s", e)
        if group is not None:
            self._remove_group(group)

    def _remove_group(self, group: Any) -> None:
        from ray.util.placement_group import remove_placement_group

        try:
            remove_placement_group(group)
        except Exception as e:  # removed already
            log.debug("remove_placement_group: %s", e)


def _group_name(spec: LaunchSpec) -> str:
    return f"modelyard-{spec.job_id}-{spec.attempt}"


def _bundle(spec: LaunchSpec) -> dict[str, float]:
    bundle = {"CPU": spec.sandbox.cpus, "GPU": float(len(spec.gpus)), "memory": float(spec.sandbox.memory)}
    return {k: v for k, v in bundle.items() if v} or {"CPU": 0.001}  # Ray refuses an empty bundle


def _with_rendezvous(specs: Sequence[LaunchSpec], rank0: Mapping[str, Any]) -> tuple[LaunchSpec, ...]:
    """Every rank's spec with rank 0's node address and free port as MASTER_ADDR / MASTER_PORT."""
    return tuple(s.model_copy(update={"distributed": s.distributed.model_copy(
        update={"master_addr": rank0["address"], "master_port": rank0["port"]})}) for s in specs)
