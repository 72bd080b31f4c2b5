"""Running a job's command in a container image, with Podman or Docker, through their CLI.

This module decides what a container job sees and how its container lives and
dies. The supervisor stays outside: its child process is the runtime's
``run`` client, attached, whose stdout/stderr it reads as a bare process's, so
logs, metrics, output sync, heartbeats and stop work unchanged. Inside:

- ``/modelyard/code`` (the working folder), ``/modelyard/data`` (read-only),
  ``/modelyard/output``, ``/modelyard/resume`` (read-only), and the contract's
  variables pointing at them;
- the job's GPUs and no others, renumbered from 0 (``CUDA_VISIBLE_DEVICES=0,1``
  for host GPUs 2 and 5; ``MODELYARD_HOST_GPUS`` keeps the host indices);
- ``--memory`` (swap included), ``--cpus``, ``--cpuset-cpus``, ``--user`` from
  the sandbox; ``/dev/shm`` half the memory limit (2 GiB with none, at least
  64 MiB), enough for PyTorch DataLoader workers;
- the host's network (a job may talk to the server's MLflow API, as a bare one).

The container is named ``modelyard-JOB-ATTEMPT`` so that anything can find and
kill it by name (``remove_container``). It is not run with ``--rm``: it is
inspected for an OOM kill after it exits, then removed with ``rm -f`` in the
attempt's ``finally``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelyard.jobs.launch import LaunchSpec
from modelyard.jobs.notebook import launch_argv, notebook_path
from modelyard.supervisor.config import TENSORBOARD_DIR, SupervisorConfig, job_env, runner_file
from modelyard.supervisor.runner import JobProcess, StartFailed
from modelyard.supervisor.sandbox import real_cores

CODE = "/modelyard/code"
DATA = "/modelyard/data"
OUTPUT = "/modelyard/output"
RESUME = "/modelyard/resume"
RUNNER = "/modelyard/notebook_run.py"  # notebooks/run.py, for a notebook job (jobs/notebook.py)
RUNTIMES = ("podman", "docker")
RUNTIME_VAR = "MODELYARD_CONTAINER_RUNTIME"
MIN_SHM = 64 * 1024 * 1024
DEFAULT_SHM = 2 * 1024 * 1024 * 1024
_PROBE_TIMEOUT = 30.0
_IMAGES_OWN = ("PATH", "HOME")
# Podman's and Docker's own failure to run the container (125), or the OCI runtime's failure to
# set it up or invoke the command (126: a limit runc cannot apply, a missing CDI device), not the command's
RUNTIME_ERROR_EXITS = frozenset({125, 126})


@dataclass(frozen=True)
class Mounts:
    """The host folders the container gets (data and resume only when the job has them)."""

    code: Path
    output: Path
    data: Path | None = None
    resume: Path | None = None
    runner: Path | None = None  # a notebook job's runner script

    def volumes(self) -> list[str]:
        vols = [f"{self.code}:{CODE}", f"{self.output}:{OUTPUT}"]
        if self.runner is not None:
            vols.append(f"{self.runner}:{RUNNER}:ro")
        if self.data is not None:
            vols.append(f"{self.data}:{DATA}:ro")
        if self.resume is not None:
            vols.append(f"{self.resume}:{RESUME}:ro")
        return vols


def container_name(spec: LaunchSpec) -> str:
    """``modelyard-J-N``; a local run adds the supervisor's pid, as two may run at once."""
    job = re.sub(r"[^a-zA-Z0-9_.-]", "_", spec.job_id)
    if spec.local_mode:
        job = f"{job}-{os.getpid()}"
    return f"modelyard-{job}-{spec.attempt}"


def container_env(spec: LaunchSpec, env: Mapping[str, str], mounts: Mounts) -> dict[str, str]:
    """The job's own variables (never the supervisor's), with the contract's paths as seen inside.
    ``PATH`` and ``HOME`` are the image's unless the job's ``env`` sets them: the host's make no
    sense inside (an image's Python is often on a PATH of its own, /opt/conda/bin). The MLflow
    client's variables (supervisor/config.py ``mlflow_env``) stay as they are: on the host's network
    the server's URL reaches it from inside too."""
    inside = {k: v for k, v in env.items() if k not in _IMAGES_OWN or k in spec.env}
    inside["MODELYARD_OUTPUT_DIR"] = OUTPUT
    inside["MODELYARD_TENSORBOARD_DIR"] = f"{OUTPUT}/{TENSORBOARD_DIR}"
    if mounts.data is not None:
        inside["MODELYARD_DATA_DIR"] = DATA
    if mounts.resume is not None:
        inside["MODELYARD_RESUME_DIR"] = RESUME
    inside["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(len(spec.gpus)))
    inside["MODELYARD_HOST_GPUS"] = ",".join(str(g) for g in spec.gpus)
    return inside


def shm_size(memory: int) -> int:
    return DEFAULT_SHM if not memory else max(MIN_SHM, memory // 2)


def gpu_flags(runtime: str, gpus: Sequence[int]) -> list[str]:
    if not gpus:
        return []
    if not _is_podman(runtime):
        return ["--gpus", "device=" + ",".join(str(g) for g in gpus)]
    return [arg for g in gpus for arg in ("--device", f"nvidia.com/gpu={g}")]  # Podman: CDI names


def run_argv(runtime: str, spec: LaunchSpec, *, name: str, mounts: Mounts, env_names: Sequence[str],
             pidfile: Path | None = None) -> list[str]:
    """The runtime's ``run`` command line for this attempt (pure: no I/O).

    Variables are passed by name only (``-e NAME``: the value comes from the
    client's environment), so no secret is in an argv that ``ps`` shows."""
    sb = spec.sandbox
    argv = [runtime, "run", "--name", name, "--pull", "never", "--init", "--network", "host",
            "--workdir", CODE, "--shm-size", str(shm_size(sb.memory)),
            "--cap-drop", "all", "--security-opt", "no-new-privileges", "--log-driver", "none",
            "--label", f"modelyard.run_dir={spec.run_dir}"]  # which server's: its home holds run_dir
    if _is_podman(runtime):
        # --replace: a leftover of the same name (a dead supervisor's) goes, without a separate rm;
        # --pidfile: the container's init pid, for the sampler, without polling inspect
        argv += ["--replace"] + (["--pidfile", str(pidfile)] if pidfile is not None else [])
    for vol in mounts.volumes():
        argv += ["--volume", vol]
    for key in sorted(env_names):
        argv += ["--env", key]
    if sb.memory:
        argv += ["--memory", str(sb.memory), "--memory-swap", str(sb.memory)]
    if sb.cpus:
        # the runtime refuses a quota over the machine's cores (a configured capacity may exceed them)
        argv += ["--cpus", f"{min(sb.cpus, os.cpu_count() or 1):g}"]
    if sb.cpuset:
        # the scheduler's indices, on this machine's cores as a bare job gets them (a declared capacity may exceed them)
        argv += ["--cpuset-cpus", ",".join(str(c) for c in real_cores(sb.cpuset))]
    if sb.run_as is not None:
        argv += ["--user", f"{sb.run_as.uid}:{sb.run_as.gid}"]
    argv += gpu_flags(runtime, spec.gpus)
    # a notebook runs under the image's own python, which needs papermill and ipykernel, not modelyard
    return argv + ["--", spec.environment.image or "", *launch_argv(spec.argv, ["python", RUNNER])]


# -- the machine's runtime ---------------------------------------------------------


def pick_runtime(choice: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The runtime's executable: the one asked for (spec, then MODELYARD_CONTAINER_RUNTIME),
    else the first of Podman and Docker that answers (a ``docker`` client with no engine does not)."""
    env = os.environ if env is None else env
    wanted = choice or env.get(RUNTIME_VAR) or None
    if wanted is not None and wanted not in RUNTIMES:
        raise StartFailed(f"{RUNTIME_VAR}={wanted!r}: use podman or docker")
    tried = []
    for name in [wanted] if wanted else RUNTIMES:
        path = shutil.which(name)
        problem = "not installed" if path is None else _probe(path)
        if problem is None:
            return path  # type: ignore[return-value]
        tried.append(f"{name}: {problem}")
    raise StartFailed("no container runtime answers (" + "; ".join(tried) + ")")


def _probe(path: str) -> str | None:
    """None when the runtime can run containers, else why not (its own last line)."""
    # Docker's server version needs its engine to answer; Podman has no engine, and its
    # `version` (not `info`, ~0.8 s) reads its configuration, failing where that is broken.
    probe = [path, "version"] if _is_podman(path) else [path, "version", "--format", "{{.Server.Version}}"]
    try:
        p = subprocess.run(probe, capture_output=True, text=True, timeout=_PROBE_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"does not answer ({e})"
    if p.returncode == 0:
        return None
    return _last_line(p.stderr or p.stdout) or f"`{' '.join(probe)}` exited with {p.returncode}"


def ensure_image(runtime: str, image: str, note: Callable[[str], None]) -> None:
    """Pull ``image`` unless it is here, its progress lines into the job's log; StartFailed if it cannot be."""
    exists = [runtime, "image", "exists", image] if _is_podman(runtime) else [runtime, "image", "inspect", image]
    if subprocess.run(exists, capture_output=True).returncode == 0:
        return
    note(f"image {image} is not on this machine: pulling it")
    proc = subprocess.Popen([runtime, "pull", image], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: list[str] = []
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line.rstrip())
        note(f"pull: {line.rstrip()}")
    if proc.wait() != 0:
        raise StartFailed(f"image {image} could not be pulled: {_last_line(chr(10).join(lines)) or 'no message'}")


def remove_container(runtime: str, name: str) -> None:
    """Kill and remove the container ``name`` if it exists (a lost attempt's, before its retry)."""
    subprocess.run([runtime, "rm", "-f", "-t", "0", name] if _is_podman(runtime) else [runtime, "rm", "-f", name],
                   capture_output=True, timeout=120)


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _is_podman(runtime: str) -> bool:
    return Path(runtime).name.startswith("podman")


def _last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


# -- one container as the attempt's job process -------------------------------------


@dataclass
class Container:
    """The attempt's container: started through its attached client, stopped and removed by name."""

    runtime: str
    name: str
    pidfile: Path

    def start(self, spec: LaunchSpec, *, mounts: Mounts, env: Mapping[str, str], cwd: Path,
              note: Callable[[str], None]) -> JobProcess:
        inside = container_env(spec, env, mounts)
        if not _is_podman(self.runtime):
            remove_container(self.runtime, self.name)  # a leftover of the same name would refuse the run
        ensure_image(self.runtime, spec.environment.image or "", note)
        self.pidfile.unlink(missing_ok=True)
        argv = run_argv(self.runtime, spec, name=self.name, mounts=mounts, env_names=list(inside),
                        pidfile=self.pidfile)
        client_env = {**os.environ, **inside}
        note(f"running in image {spec.environment.image} as container {self.name}")
        return JobProcess.start(argv, cwd=cwd, env=client_env)

    def stop(self, grace: float) -> None:
        """SIGTERM to the container's processes, SIGKILL after ``grace`` seconds (the runtime's stop)."""
        subprocess.run([self.runtime, "stop", "-t", str(max(0, round(grace))), self.name],
                       capture_output=True, timeout=grace + 120)

    def main_pid(self, job: JobProcess, timeout: float = 10.0) -> int:
        """The host pid of the container's init, whose tree is the job (the client's is not);
        the client's own pid if the container does not come up within ``timeout``."""
        deadline = time.monotonic() + timeout
        podman = _is_podman(self.runtime)
        while not job.exited.is_set() and time.monotonic() < deadline:
            pid = _read(self.pidfile) if podman else self._inspect("{{.State.Pid}}")
            if pid.isdigit() and int(pid) > 0:
                return int(pid)
            job.exited.wait(0.02 if podman else 0.1)
        return job.pid

    def out_of_memory(self, returncode: int, memory: int) -> bool:
        """Whether the kernel's OOM killer ended it. The runtime says so where it can tell
        (cgroup v2); on cgroup v1 Podman 4.3 reports false, so a SIGKILL (137) under a memory
        limit that the supervisor did not send counts as one too."""
        if not memory:
            return False
        return self._inspect("{{.State.OOMKilled}}") == "true" or returncode in (137, -9)

    @staticmethod
    def oom_message(memory: int) -> str:
        return f"out of memory (limit {limit_text(memory)})"

    def _inspect(self, fmt: str) -> str:
        p = subprocess.run([self.runtime, "inspect", "--format", fmt, self.name],
                           capture_output=True, text=True, timeout=60)
        return p.stdout.strip() if p.returncode == 0 else ""

    def remove(self) -> None:
        remove_container(self.runtime, self.name)


def start_container(spec: SupervisorConfig, *, cwd: Path, resume_dir: Path | None, data_dir: Path | None,
                    note: Callable[[str], None]) -> tuple[Container, JobProcess]:
    """The attempt's call site: pick the runtime, pull the image if needed, start the container."""
    container = Container(pick_runtime(spec.environment.container_runtime), container_name(spec),
                          spec.run_dir / "container.pid")
    data = data_dir or spec.data_dir
    runner = Path(runner_file()) if notebook_path(spec.argv) else None
    mounts = Mounts(code=cwd, output=spec.dirs.output, data=data, resume=resume_dir, runner=runner)
    # base={}: the container gets the job's variables only, never the supervisor's PATH, HOME...
    env = job_env(spec, base={}, resume_dir=resume_dir, data_dir=data)
    return container, container.start(spec, mounts=mounts, env=env, cwd=spec.run_dir, note=note)


def limit_text(n: int) -> str:
    """``2G``, ``100M``, ``1.5G``: the way a person wrote the limit (as the sandbox's message says it)."""
    for unit, size in (("T", 1024**4), ("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size:
            return f"{n / size:.2f}".rstrip("0").rstrip(".") + unit
    return f"{n}B"
