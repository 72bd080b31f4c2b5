"""One attempt, end to end: set up, run, watch, end, sync, report.

This module owns the order of things (docs/protocol.md): materialise code and
resume outputs, start the command, race its exit against a stop (SIGTERM or a
``stop`` reply) and ``max_runtime``, end the process group, sync outputs once
more, upload log.txt, and only then send the final ``exited`` event. It also
owns the mapping from how the command ended to a termination reason, and the
full disk's part in it (supervisor/disk.py): a command still running while
its disk stays full past ``disk_full_grace`` is ended as for a stop, outputs
or a log that could not be kept for want of space end the attempt failed
(``DISK_FULL``), and the reserve is released just before the final report.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import psutil

from modelyard.errors import ModelyardError
from modelyard.jobs.launch import JOB_PID_FILE
from modelyard.jobs.notebook import RUNNER_MODULE, launch_argv
from modelyard.jobs.units import format_size
from modelyard.jobs.states import TerminationReason
from modelyard.artifacts import ArtifactStore, extract_snapshot
from modelyard.artifacts.snapshot import SnapshotLimits
from modelyard.supervisor.batch import Batcher
from modelyard.supervisor.config import SupervisorConfig, job_env, runner_file
from modelyard.supervisor.container import RUNTIME_ERROR_EXITS, Container, start_container
from modelyard.supervisor.disk import DiskWatch, is_enospc
from modelyard.supervisor.output import OutputPump
from modelyard.supervisor.reporter import Reporter
from modelyard.supervisor.runner import JobProcess, StartFailed, describe_exit, exit_code
from modelyard.supervisor.sandbox import chown_tree, format_limit, read_only_files
from modelyard.supervisor.sampler import Sampler
from modelyard.supervisor.sync import OutputSyncer
from modelyard.supervisor.tensorboard import EventWatcher, Point
from modelyard.supervisor.venv import VenvLease, acquire_for

START_FAILED_EXIT = 127  # what a shell returns for a command it cannot run
PARENT_POLL = 0.5  # seconds between looks at whether the supervisor's parent (parent_pid) is alive


@dataclass(frozen=True)
class Outcome:
    reason: TerminationReason
    exit_code: int | None  # shell style (128 + N for a signal); None when it never started
    message: str
    delivered: bool  # the final report was acknowledged (always True in local mode)

    @property
    def shell_exit_code(self) -> int:
        """What ``run --local`` exits with."""
        if self.exit_code is not None:
            return self.exit_code
        return START_FAILED_EXIT


class Attempt:
    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.dirs = config.dirs
        self.dirs.create()
        self.batcher = None if config.local_mode else Batcher(
            self.dirs.spool, max_items=config.batch_max_items, interval=config.batch_interval,
            rank=config.distributed.node_rank)
        # rank 0 reports the job's metrics and samples; the other node ranks, their log lines (README "Multi-node jobs")
        self.rank0 = config.distributed.node_rank == 0
        # secrets: their values are masked in the job's output (README "Secrets")
        self.pump = OutputPump(self.dirs.log, self.batcher, echo=config.local_mode, masks=config.secrets.values(),
                               metrics=self.rank0, patterns=config.metric_patterns)
        self.disk = DiskWatch(self.dirs.root, None if config.local_mode else self.dirs.spool / "reserve")
        self.disk.hold_reserve()
        self.pump.on_enospc = self.disk.enospc
        if self.batcher is not None:
            self.batcher.on_enospc = self.disk.enospc
        self._log_enospc = False  # log.txt could not be uploaded for want of space
        self.store = ArtifactStore(config.storage_url) if config.storage_url else None
        self.stop_requested = threading.Event()
        self.gone = threading.Event()  # the server takes no more reports: the attempt is over there
        self._wake = threading.Event()
        self._wake_parent = threading.Event()  # set when the attempt ends: the parent watch stops
        self.syncer: OutputSyncer | None = None
        self.container: Container | None = None  # set when the command runs in an image
        self.reporter = self._make_reporter()

    def _make_reporter(self) -> Reporter | None:
        c = self.config
        if self.batcher is None or c.server_url is None:
            return None
        return Reporter(
            self.batcher, server_url=c.server_url, attempt_id=c.attempt_id, token=c.token,
            heartbeat_interval=c.heartbeat_interval, max_backoff=c.retry_max_backoff,
            final_deadline=c.final_deadline, server_file=c.server_file, on_stop=self.request_stop,
            on_gone=self._on_gone, on_disk_full=self._server_disk_full,
        )

    def request_stop(self) -> None:
        """Stop the command as a user asked (SIGTERM, or a ``stop`` reply); safe from a signal handler."""
        self.stop_requested.set()
        self._wake.set()

    def _on_gone(self, message: str) -> None:
        """The server ended this attempt (declared lost, say): a retry may be starting on its
        GPUs, so the command is killed at once and nothing more is synced into the job's outputs."""
        self.pump.note(message)
        self.gone.set()
        self._wake.set()

    def _watch_parent(self, parent: int) -> None:
        """Its Ray actor died (or its node): what holds its resources is gone, so must the command be.
        Reparenting is how it shows; polled, as PR_SET_PDEATHSIG would fire for the forking thread."""
        while os.getppid() == parent:
            if self._wake_parent.wait(PARENT_POLL):
                return
        self._on_gone("the executor's process this supervisor belongs to is gone (its node lost?): "
                      "the command is killed")

    def _server_disk_full(self) -> None:
        """The server could not store a batch: its disk is full. If that batch is the final one and
        the server shares our disk, the reserve's space is what lets it store it."""
        if self.batcher is not None and self.batcher.final_cut and self.disk.release_reserve():
            print("modelyard supervisor: the server's disk is full; released the reserve", file=sys.stderr)
            if self.reporter is not None:
                self.reporter.nudge()

    # -- the whole attempt -----------------------------------------------------

    def run(self) -> Outcome:
        if self.reporter is not None:
            self.reporter.start()
        if self.config.parent_pid is not None:
            threading.Thread(target=self._watch_parent, args=(self.config.parent_pid,), daemon=True).start()
        self.job: JobProcess | None = None
        self.venv: VenvLease | None = None
        try:
            reason, message = self._run_command()
        except Exception as e:  # a supervisor bug still ends the job and sends a final report
            message = f"supervisor error: {e!r}"
            self.pump.note(message)
            reason = TerminationReason.START_FAILED if self.job is None else TerminationReason.EXIT_NONZERO
        finally:
            if self.job is not None:
                self.job.end_group(0.0 if self.gone.is_set() else self.config.stop_grace)  # leftovers: daemons the command left behind
                self.job.release()
            if self.container is not None:
                self.container.remove()
            if self.venv is not None:
                self.venv.release()  # the cache may evict it now
            self._wake_parent.set()
        return self._finish(self.job, reason, message)

    def _run_command(self) -> tuple[TerminationReason, str]:
        try:
            cwd, resume_dir, data_dir = self._prepare()
            env = job_env(self.config, resume_dir=resume_dir, data_dir=data_dir)
            # --requirements: PATH gets the venv's bin (supervisor/venv.py), built or from the cache
            self.venv = acquire_for(self.config, note=self.pump.note, stop=self.stop_requested)
            if self.venv is not None:
                env = self.venv.activate(env)
            if self.gone.is_set():
                return TerminationReason.SUPERVISOR_LOST, "the server ended the attempt before the command started"
            if self.stop_requested.is_set():
                self.pump.note("stopped before the command started")
                return TerminationReason.STOPPED_BY_USER, TerminationReason.STOPPED_BY_USER.message()
            if self.config.environment.image:
                # the argv and env to exec become the container's (supervisor/container.py)
                self.container, job = start_container(self.config, cwd=cwd, resume_dir=resume_dir,
                                                      data_dir=data_dir, note=self.pump.note)
                self.job = job
            else:
                c = self.config
                job = self.job = JobProcess.start(  # the sandbox: supervisor/sandbox.py
                    launch_argv(c.argv, self._notebook_runner()), cwd=cwd, env=env, sandbox=c.sandbox,
                    name=f"{c.job_id}-{c.attempt}-{os.getpid()}", note=self.pump.note)
        except StartFailed as e:
            self.pump.note(str(e))
            return TerminationReason.START_FAILED, str(e)
        self._record_group(job)
        self._event({"type": "started", "t": time.time(), "pid": job.pid})
        self.pump.start(job.proc.stdout, job.proc.stderr)  # type: ignore[arg-type]
        pid = job.pid if self.container is None else self.container.main_pid(job)
        sampler = Sampler(pid, self.config.gpus, self.config.sample_interval, self._system) if self.rank0 else None
        if sampler is not None:
            sampler.start()
        self.syncer = self._make_syncer()
        events = self._make_event_watcher()
        try:
            reason = self._watch(job)
        finally:
            if sampler is not None:
                sampler.stop()
        try:
            return self._ending(job, reason)
        finally:
            if events is not None:
                events.stop()  # after the command ended: its last scalars are read before the final report

    def _notebook_runner(self) -> list[str]:
        """How a notebook job's own interpreter starts notebooks/run.py (jobs/notebook.py): a venv's
        by file, as modelyard is not installed there; a bare job's is the supervisor's own."""
        if self.venv is not None:
            return [str(self.venv.path / "bin" / "python"), runner_file()]
        return [sys.executable, "-m", RUNNER_MODULE]

    def _make_event_watcher(self) -> EventWatcher | None:
        """Scalars from TensorBoard event files (README "TensorBoard"); rank 0's, like metric lines."""
        if self.batcher is None or not self.rank0:
            return None
        batcher = self.batcher

        def emit(points: list[Point]) -> None:
            with batcher.lock:
                batcher.extend_locked([], points)

        watcher = EventWatcher(self.dirs.output, emit, note=self.pump.note)
        watcher.start()
        return watcher

    def _record_group(self, job: JobProcess) -> None:
        """``job.pid``: the command's group, for an executor that must kill a lost attempt's command."""
        try:
            started = psutil.Process(job.pid).create_time()
        except psutil.Error:
            return  # already gone
        tmp = self.dirs.root / f".{JOB_PID_FILE}.tmp"
        tmp.write_bytes(orjson.dumps({"pid": job.pid, "started": started}))
        tmp.replace(self.dirs.root / JOB_PID_FILE)

    def _prepare(self) -> tuple[Path, Path | None, Path | None]:
        """The folder to run in, the resume folder and the dataset folder, if any."""
        c = self.config
        try:
            if c.sandbox.run_as is not None:
                # private from the first byte: other uids must not read the code while it unpacks
                for d in (self.dirs.code, self.dirs.resume, self.dirs.output):
                    d.mkdir(mode=0o700, exist_ok=True)
                    os.chmod(d, 0o700)
            # before the command starts, so a writer may log into it at once; _hand_over makes it the job's
            self.dirs.tensorboard.mkdir(exist_ok=True)
            cwd = self._materialise_code()
            resume = c.resume_dir
            if c.resume_prefix:
                count = self._require_store("resume_prefix").download_prefix(c.resume_prefix, self.dirs.resume)
                read_only_files(self.dirs.resume)
                self.pump.note(f"resuming from {c.resume_prefix} ({count} files): MODELYARD_RESUME_DIR={self.dirs.resume}")
                resume = self.dirs.resume
            data = self._materialise_dataset()
            self._hand_over()
            return cwd, resume, data
        except ModelyardError as e:
            raise StartFailed(str(e)) from None
        except OSError as e:
            raise StartFailed(f"could not prepare the job: {e}") from None

    def _hand_over(self) -> None:
        """On a shared server: the job's own folders become its uid's; the rest of run_dir stays root's.

        run_dir is 0711, so the job reaches code/, output/, resume/ and home/ by name
        but cannot list run_dir or read supervisor.json, spool/ or log.txt."""
        run_as = self.config.sandbox.run_as
        if run_as is None:
            return
        os.chmod(self.dirs.root, 0o711)
        for d in (self.dirs.code, self.dirs.output, self.dirs.resume, self.dirs.home):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o700)
            chown_tree(d, run_as.uid, run_as.gid)

    def _materialise_dataset(self) -> Path | None:
        """The pinned dataset version in the machine's shared cache (fetched once, verified)."""
        c = self.config
        if not c.dataset:
            return None
        # Imported here: the datasets package pulls in numpy and pyarrow (~0.4 s), which a
        # job without a dataset should not wait for.
        from modelyard.datasets.materialise import materialise

        store = self._require_store("dataset")
        fetched = [0]

        def progress(done: int, _total: int) -> None:
            fetched[0] = done

        started = time.monotonic()
        try:
            folder = materialise(store, c.dataset, c.dataset_cache_dir, progress=progress)
        except (ModelyardError, OSError) as e:
            raise StartFailed(f"dataset {c.dataset} could not be made ready: {e}") from None
        how = (f"fetched {format_size(fetched[0])} in {time.monotonic() - started:.1f}s" if fetched[0]
               else "already in the cache")
        self.pump.note(f"dataset {c.dataset}: {how}; MODELYARD_DATA_DIR={folder}")
        return folder

    def _materialise_code(self) -> Path:
        c = self.config
        if c.snapshot_key is None:
            if c.workdir is not None:
                return c.workdir
            # a job with no code runs in an empty folder of its own, never in the server's
            self.dirs.code.mkdir(parents=True, exist_ok=True)
            return self.dirs.code
        with self._require_store("snapshot_key").open(c.snapshot_key) as f:
            extract_snapshot(f, self.dirs.code, SnapshotLimits(c.max_snapshot_bytes, c.max_snapshot_files))
        return self.dirs.code

    def _require_store(self, what: str) -> ArtifactStore:
        if self.store is None:
            raise StartFailed(f"{what} is set but the config has no storage_url")
        return self.store

    def _make_syncer(self) -> OutputSyncer | None:
        if self.store is None or not self.config.output_prefix:
            return None
        syncer = OutputSyncer(self.store, self.dirs.output, self.config.output_prefix,
                              self.config.sync_interval, self.pump.note)
        syncer.on_enospc = self.disk.enospc
        syncer.start()
        return syncer

    def _watch(self, job: JobProcess) -> TerminationReason | None:
        """Wait for the command; the reason we must end it, or None when it exited by itself."""
        threading.Thread(target=lambda: (job.exited.wait(), self._wake.set()), daemon=True).start()
        limit = self.config.max_runtime
        grace = self.config.disk_full_grace
        probe_every = max(0.1, min(self.config.heartbeat_interval, grace / 4))
        while True:
            if job.exited.is_set():
                return None
            if self.gone.is_set():
                return TerminationReason.SUPERVISOR_LOST
            if self.stop_requested.is_set():
                return TerminationReason.STOPPED_BY_USER
            left = None if limit is None else job.started_at + limit - time.monotonic()
            if left is not None and left <= 0:
                return TerminationReason.MAX_RUNTIME
            if self.disk.probe() > grace:
                return TerminationReason.DISK_FULL
            self._wake.wait(timeout=probe_every if left is None else min(left, probe_every))
            self._wake.clear()

    def _ending(self, job: JobProcess, reason: TerminationReason | None) -> tuple[TerminationReason, str]:
        grace = 0.0 if reason is TerminationReason.SUPERVISOR_LOST else self.config.stop_grace
        if reason is TerminationReason.MAX_RUNTIME:
            self.pump.note(f"max_runtime of {self.config.max_runtime:g}s reached: sending SIGTERM to the job")
        elif reason is TerminationReason.DISK_FULL:
            self.pump.note(f"no space left on device for over {self.config.disk_full_grace:g}s: "
                           "sending SIGTERM to the job")
        elif reason is TerminationReason.STOPPED_BY_USER:
            self.pump.note("stop requested: sending SIGTERM to the job")
        if reason is not None and self.container is not None:
            self.container.stop(grace)  # the container itself, not only its client
        if reason is not None:
            job.end_group(grace, on_kill=lambda: self.pump.note(f"still running {grace:g}s after SIGTERM: sending SIGKILL"))
        job.exited.wait()
        if not self.pump.join(timeout=10):
            self.pump.note("the job's output pipes stayed open after it ended; stopped reading them")
        rc = job.proc.returncode
        if reason is not None:
            return reason, reason.message()
        if rc != 0 and job.oom_killed():  # the cgroup's own counter, not a guess from the exit code
            message = f"out of memory (limit {format_limit(self.config.sandbox.memory)})"
            self.pump.note(f"the job was killed at its memory limit: {message}")
            return TerminationReason.OUT_OF_MEMORY, message
        if rc == 0:
            return TerminationReason.EXIT_ZERO, TerminationReason.EXIT_ZERO.message()
        if self.container is not None and self.container.out_of_memory(rc, self.config.sandbox.memory):
            return TerminationReason.OUT_OF_MEMORY, self.container.oom_message(self.config.sandbox.memory)
        if self.container is not None and rc in RUNTIME_ERROR_EXITS:  # the runtime, not the command, failed
            return TerminationReason.START_FAILED, f"the container could not be run: {self.pump.tail_text()}"
        tail = self.pump.tail_text()
        return TerminationReason.EXIT_NONZERO, describe_exit(rc) + (f"; last lines:\n{tail}" if tail else "")

    # -- after the command -----------------------------------------------------

    def _finish(self, job: JobProcess | None, reason: TerminationReason, message: str) -> Outcome:
        rc = None if job is None or job.proc.returncode is None else exit_code(job.proc.returncode)
        synced = self._final_sync()
        self.pump.close()
        logged = self._upload_log()
        reason, message = self._disk_full_ending(reason, message)
        keep = None if self.config.local_mode else _keep_reason(synced, logged, self.gone.is_set())
        if keep is not None and self.batcher is not None:
            self.batcher.add_log(time.time(), "stderr", f"[modelyard] the run folder {self.dirs.root} is kept: {keep}")
        delivered = True
        if self.gone.is_set():
            delivered = False  # the server takes no final report from an attempt that is over
        elif self.batcher is not None and self.reporter is not None:
            if self.disk.seen and self.disk.release_reserve():
                # after the last sync and upload, which would only have eaten it
                self.pump.note("the disk is full: released the supervisor's reserve to report the end")
                self.reporter.nudge()  # batches the server could not store: again, into the freed space
            self.batcher.cut_final({"type": "exited", "t": time.time(), "exit_code": rc,
                                    "reason": reason.value, "message": message})
            # The reporter's own deadline ends the wait; this one only guards against a stuck thread.
            delivered = self.reporter.wait(timeout=self.config.final_deadline + 60)
        if delivered and keep is None and not self.config.local_mode:
            self._remove_run_dir()
        return Outcome(reason, rc, message, delivered)

    def _disk_full_ending(self, reason: TerminationReason, message: str) -> tuple[TerminationReason, str]:
        """An attempt whose outputs or log could not be kept for want of space failed, however its
        command exited; a stop or a lost attempt stays what it was."""
        full = (self.syncer is not None and self.syncer.disk_full) or self._log_enospc
        if not full or reason not in (TerminationReason.EXIT_ZERO, TerminationReason.EXIT_NONZERO):
            return reason, message
        ending = TerminationReason.DISK_FULL.message()
        return TerminationReason.DISK_FULL, ending if reason is TerminationReason.EXIT_ZERO else f"{ending}; {message}"

    def _final_sync(self) -> bool:
        """The last output sync; True when every output is in the artifact store."""
        if not self.rank0 and not self.config.output_prefix:
            return True  # outputs come from rank 0: a node rank > 0 has nothing of the job's to keep
        if self.syncer is None:  # the command never started: a sync of what is there (nothing, usually)
            if self.store is None:
                return False
            self.syncer = OutputSyncer(self.store, self.dirs.output, self.config.output_prefix, 0, self.pump.note)
            self.syncer.on_enospc = self.disk.enospc
        if self.gone.is_set():
            self.syncer.stop()  # a lost attempt's outputs must not overwrite its retry's, in the same prefix
            return False
        return self.syncer.final() is not None

    def _upload_log(self) -> bool:
        if self.store is None or not self.config.log_key:
            return False
        try:
            self.store.put_file(self.dirs.log, self.config.log_key)
        except Exception as e:  # storage trouble must not lose the final report
            self._log_enospc = is_enospc(e)
            msg = f"could not upload log.txt to {self.config.log_key}: {e}"
            print(f"modelyard supervisor: {msg}", file=sys.stderr)
            if self.batcher is not None:
                self.batcher.add_log(time.time(), "stderr", "[modelyard] " + msg)
            return False
        return True

    def _remove_run_dir(self) -> None:
        """Everything of the attempt is in the artifact store and the server has its end: the
        run folder (code, outputs, log, spool) would only fill the disk, attempt after attempt."""
        try:
            shutil.rmtree(self.dirs.root)
        except OSError as e:
            print(f"modelyard supervisor: could not remove the run folder {self.dirs.root}: {e}", file=sys.stderr)

    def _event(self, event: dict[str, Any]) -> None:
        if self.batcher is not None:
            self.batcher.add_event(event)

    def _system(self, sample: dict[str, Any]) -> None:
        if self.batcher is not None:
            self.batcher.add_system(sample)


def _keep_reason(synced: bool, logged: bool, gone: bool) -> str | None:
    """Why the run folder must stay after the attempt (it holds the only copy of something), or None."""
    if gone:
        return "the server ended the attempt, so its last outputs were not synced"
    if not synced:
        return "its outputs are not all in the artifact store"
    if not logged:
        return "its log could not be uploaded"
    return None


def install_stop_signals(attempt: Attempt) -> dict[int, Any]:
    """SIGTERM and SIGINT stop the job; returns the previous handlers (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(_signum: int, _frame: FrameType | None) -> None:
        attempt.request_stop()

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def restore_signals(previous: dict[int, Any]) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


def run_attempt(config: SupervisorConfig) -> Outcome:
    attempt = Attempt(config)
    previous = install_stop_signals(attempt)
    try:
        return attempt.run()
    finally:
        restore_signals(previous)


