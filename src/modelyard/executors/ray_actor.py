"""The supervisor's holder on a Ray node: one detached actor per node rank of an attempt.

The actor holds the attempt's resources on its node (Ray's accounting is what
keeps two attempts off one GPU there) for exactly as long as its supervisor
runs: it starts ``python -m modelyard.supervisor CONFIG`` in a session of its
own, as the local executor does, and kills itself once the supervisor exits.
The supervisor is told the actor's pid (``parent_pid``) and ends its command
when the actor is gone, so nothing runs on a dead actor's node unaccounted.

A node has its own disk: the run folder and the caches are rewritten from the
server's home to this node's (``MODELYARD_HOME`` in the raylet's environment,
else ``~/.modelyard``), and a node rank above 0 gets a folder of its own.
A console's proxy cannot read this node's /proc from the server, so it asks
the actor (``listeners``): the actor runs the platform's code as the
platform's user, not as the job's uid (jobs/console.py).
This module is imported on the nodes; it imports ray, which they have.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray

from modelyard.config import Settings
from modelyard.supervisor.config import free_port
# the local executor's kill, run here on the node: the same process-group and container rules
from modelyard.executors.listeners import listener_uids
from modelyard.executors.local import _job_group, _kill_group, _remove_container, supervisor_env
from modelyard.jobs.launch import LaunchSpec

CONFIG = "supervisor.json"
NAMESPACE = "modelyard"  # executors/ray.py's: where the attempt's actors are named
GROUP_WAIT = 60.0  # seconds rank 0's actor waits for the other ranks' to end before removing the group


def node_home() -> Path:
    """This node's modelyard home: where run folders and caches go here."""
    return Settings.from_env().home


def localise(spec: LaunchSpec, home: Path, *, gpus: list[int], parent_pid: int) -> LaunchSpec:
    """``spec`` as it runs on this node: its folders under ``home``, the GPUs Ray assigned."""
    server_home = spec.run_dir.parent.parent  # build_launch: <home>/runs/<job>-<attempt>
    rank = spec.distributed.node_rank
    name = spec.run_dir.name + (f"-rank{rank}" if rank else "")

    def moved(path: Path | None) -> Path | None:
        if path is None or not path.is_relative_to(server_home):
            return path  # the operator's own choice of folder (MODELYARD_VENV_CACHE): the same on every node
        return home / path.relative_to(server_home)

    environment = spec.environment.model_copy(update={"venv_cache": moved(spec.environment.venv_cache)})
    return spec.model_copy(update={
        "run_dir": home / "runs" / name, "dataset_cache": moved(spec.dataset_cache), "environment": environment,
        "gpus": gpus, "parent_pid": parent_pid,
        "server_file": None,  # the server's own machine's file; a cluster's server has a stable URL
    })


class SupervisorActor:
    """Created by RayExecutor with the attempt's resources; ``start`` runs the supervisor."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.run_dir: Path | None = None
        self.spec: LaunchSpec | None = None
        # set by kill(): the driver ray.kills this actor once kill() answered, so the actor must not
        # kill itself first as the supervisor dies (the answer would be lost, kill() seen as failed)
        self.killing = False

    def where(self) -> dict[str, Any]:
        """This node: its id, its address (rank 0's is the rendezvous), a free port, the GPUs Ray gave."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "address": ray.util.get_node_ip_address(),
                # free on every address of the node: the other nodes connect to it
                "port": free_port(""), "gpus": [int(g) for g in ray.get_gpu_ids()], "pid": os.getpid()}

    def start(self, spec_json: str, group: str | None = None, others: list[str] | None = None) -> dict[str, Any]:
        """Run the supervisor. ``group``, ``others``: rank 0 is given its attempt's placement group and the
        other ranks' actor names; the group is removed once rank 0's supervisor has ended and the others'
        actors have too (or ``GROUP_WAIT`` later: the others' actors go with the group)."""
        if self.proc is not None:  # a second call (a retried RPC) must not start a second supervisor
            return self.pids()
        gpus = [int(g) for g in ray.get_gpu_ids()]
        spec = localise(LaunchSpec.model_validate_json(spec_json), node_home(), gpus=gpus, parent_pid=os.getpid())
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        config = spec.run_dir / CONFIG
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(spec.model_dump_json().encode())
        env = supervisor_env()
        env.pop("CUDA_VISIBLE_DEVICES", None)  # Ray's, for this actor: the supervisor sets the job's from spec.gpus
        log_fd = os.open(spec.run_dir / "supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(log_fd, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "modelyard.supervisor", str(config)], stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, cwd=spec.run_dir, env=env, start_new_session=True,
                close_fds=True)
        self.run_dir, self.spec = spec.run_dir, spec
        threading.Thread(target=self._exit_after, args=(self.proc, group, others or []), daemon=True).start()
        return self.pids()

    def _exit_after(self, proc: subprocess.Popen[bytes], group: str | None, others: list[str]) -> None:
        """The supervisor is done: so is this actor, and its resources go back to the cluster."""
        proc.wait()
        if self.killing:
            return
        try:
            if group is not None:
                from ray.util.placement_group import remove_placement_group

                _wait_gone(others, GROUP_WAIT)

                remove_placement_group(ray.util.get_placement_group(group))
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
        except Exception:  # the GCS unreachable: exit all the same (Ray marks the actor dead)
            os._exit(0)

    def pids(self) -> dict[str, Any]:
        """The supervisor's pid and run folder (None before ``start``)."""
        return {"supervisor": self.proc.pid if self.proc else None,
                "run_dir": str(self.run_dir) if self.run_dir else None, "actor": os.getpid()}

    def listeners(self, port: int) -> dict[str, Any]:
        """Who listens on ``port`` on this node (uids; None: cannot tell), and whom the command runs as."""
        uids = listener_uids(port)
        run_as = self.spec.sandbox.run_as if self.spec is not None else None
        return {"uids": sorted(uids) if uids is not None else None,
                "job_uid": run_as.uid if run_as is not None else os.getuid()}

    def terminate(self) -> None:
        """Stop as a user asked: SIGTERM to the supervisor, which ends its command and reports."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> bool:
        """SIGKILL the command's process group (and container) and the supervisor, and wait until gone."""
        self.killing = True
        if self.run_dir is not None:
            group = _job_group(self.run_dir)
            if group is not None:
                _kill_group(group)
            _remove_container(self.run_dir)
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        return True



def _wait_gone(names: list[str], timeout: float) -> None:
    """Until no actor of ``names`` is alive, or ``timeout``."""
    deadline = time.monotonic() + timeout
    for name in names:
        while time.monotonic() < deadline:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:  # gone
                break
            time.sleep(0.5)
