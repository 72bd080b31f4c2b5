"""The platform behind the API: store, artifact store, executor, scheduler, notices (email, webhooks).

The HTTP layer calls these methods and nothing below them; side effects
(webhooks, waking the scheduler) happen here after the state change is
persisted.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelyard.artifacts.keys import is_snapshot_key
from modelyard.config import Settings
from modelyard.destinations import check_webhooks, parse_allow
from modelyard.datasets import Manifest, StoreIndex, parse_ref, remove_dataset
from modelyard.datasets.manifest import version_prefix
from modelyard.errors import ErrorCode, ModelyardError, not_found
from modelyard.executors.base import Executor
from modelyard.executors.capacity import Capacity
from modelyard.executors.choose import executor_for
from modelyard.jobs import JobSpec, JobState
from modelyard.jobs.spec import MASK, check_secret_name, check_secret_value, parse_params
from modelyard.scheduler import policy
from modelyard.scheduler.console import revoke_console_token
from modelyard.scheduler.launch import LaunchContext
from modelyard.scheduler.loop import SchedulerLoop
from modelyard.secrets import SecretBox
from modelyard.services.cleanup import CleanupService
from modelyard.services.datasets import DatasetService
from modelyard.services import job_experiments
from modelyard.server.isolation import check_new_user, protect_home
from modelyard.services.outputs import OutputService
from modelyard.services.run_artifacts import RunArtifactService
from modelyard.services.sweep_driver import SweepDriver
from modelyard.server.serialize import job_to_dict
from modelyard.services.users import Users
from modelyard.artifacts.store import ArtifactStore
from modelyard.db import environments as store_environments
from modelyard.db import jobs as store_jobs
from modelyard.db import secrets as store_secrets
from modelyard.db import users as store_users
from modelyard.db.engine import Database
from modelyard.db.records import Job, User
from modelyard.db.users import get_user_by_name
from modelyard.db import notices as store_notices
from modelyard.jobs.notify import EVENT_OF_STATE, check_email
from modelyard.mail import Mailer, parse_smtp_url
from modelyard.services.notices import Dispatcher, Targets
from modelyard.webhooks import WebhookSender

log = logging.getLogger("modelyard.platform")


class Platform:
    def __init__(
        self, settings: Settings, *, server_url: str | None, server_file: Path | None = None,
        executor: Executor | None = None, scheduler_interval: float = 1.0,
    ) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.db.migrate()
        protect_home(settings)  # before anything a job could reach is written
        self.storage = ArtifactStore(settings.storage_url)
        self.datasets = StoreIndex(self.storage)
        self.dataset_access = DatasetService(self.db, self.datasets, uploads=settings.home / "uploads")
        self.outputs = OutputService(self.db, self.storage)
        self.run_artifacts = RunArtifactService(self.db, self.storage, settings.max_artifact_bytes)
        self.executor = executor or executor_for(settings)
        self.webhook_allow = parse_allow(settings.webhook_allow)
        self.webhooks = WebhookSender(allow=self.webhook_allow)
        self.mailer = Mailer(parse_smtp_url(settings.smtp_url)) if settings.smtp_url else None
        self.server_url = server_url
        self.notices = Dispatcher(
            self.db, webhooks=self.webhooks, mailer=self.mailer,
            server_wide=Targets(settings.webhooks, settings.webhook_events, settings.webhook_secret),
            public_url=lambda: settings.public_url or settings.server_url or self.server_url,
            describe=lambda job: webhook_job(job_to_dict(job, store_jobs.job_attempts(self.db, job.id))),
            read_log=lambda a, offset, limit: self.cleanup.read_log(a, offset=offset, limit=limit, node=None))
        self.secret_box = SecretBox.for_settings(settings)  # made here, on first start, if there is none
        self.started_at = time.time()
        self.users = Users(self.db, settings)
        self.cleanup = CleanupService(self.db, self.storage, settings)
        self.scheduler = SchedulerLoop(
            self.db, self.executor, None,  # the executor's capacity, refreshed every pass
            LaunchContext(settings=settings, server_url=server_url, server_file=server_file,
                          db=self.db, secret_box=self.secret_box, storage=self.storage,
                          job_uid=self._job_uid if settings.job_uids else None),
            heartbeat_timeout=settings.heartbeat_timeout, on_final=self.job_ended, interval=scheduler_interval,
            housekeeping=self.cleanup.housekeeping,
        )
        self.sweeps = SweepDriver(self.db, submit=self.submit, stop=self.stop, interval=scheduler_interval)

    @property
    def capacity(self) -> Capacity:
        """The nodes as the scheduler last saw them (a cluster's follow nodes joining and leaving)."""
        return self.scheduler.capacity

    def start(self) -> None:
        self.scheduler.start()
        self.sweeps.start()  # after the scheduler: it resumes every running sweep

    def close(self) -> None:
        self.sweeps.close()  # first: it queues and stops jobs
        self.scheduler.stop()
        self.executor.close()  # the supervisor zygote, the cluster connection; supervisors go on
        self.notices.close()  # first: it hands its last emails and webhooks to the senders below
        if self.mailer is not None:
            self.mailer.close()
        self.webhooks.close()
        self.db.dispose()

    def _job_uid(self, user_id: int) -> int:
        assert self.settings.job_uids is not None
        return store_users.job_uid(self.db, user_id, self.settings.job_uids)

    # -- commands ---------------------------------------------------------------------------

    def create_user(self, name: str, *, admin: bool, no_isolation: bool = False,
                    expires_at: float | None = None, email: str | None = None) -> tuple[User, str]:
        check_new_user(self.settings, admin=admin, no_isolation=no_isolation)
        email = check_email(email)  # before the user exists: a bad address creates nobody
        user, token = store_users.create_user(self.db, name, admin=admin, expires_at=expires_at)
        if email:
            store_notices.update_profile(self.db, user.id, email=email)
        return user, token

    def submit(self, user: User, spec: JobSpec, *, snapshot: str | None, resume_from: int | None = None,
               sealed_secrets: str | None = None, pinned_environment: str | None = None,
               reason: str = "submitted", trial_of: tuple[int, int] | None = None) -> Job:
        """Queue ``spec``; ``trial_of``: the (sweep, trial number) it runs (services/sweep_engine.py);
        ``sealed_secrets``: its inline secrets already sealed (a clone's, from its source);
        ``pinned_environment``: the name a clone's already-pinned image or requirements came from;
        ``reason``: its first event's."""
        spec, queue_check = self.users.check_submit(user, spec)  # the runtime cap, the queued-jobs quota
        if resume_from is not None:
            store_jobs.get_job(self.db, resume_from, user=user)  # only the outputs of a job the user can see
        spec, environment, dataset = self._check_spec(user, spec, snapshot=snapshot,
                                                      pinned_environment=pinned_environment)
        sealed = sealed_secrets if sealed_secrets is not None else self._seal_inline_secrets(spec)
        experiment = job_experiments.for_submit(self.db, user, spec)  # last: it may create the experiment
        job = store_jobs.create_job(self.db, user=user, spec=spec, snapshot_key=snapshot, resume_from=resume_from,
                                    dataset=dataset, dataset_check=lambda: self.pin_dataset(dataset, user),
                                    sealed_secrets=sealed, environment=environment, actor=user.name,
                                    reason=reason, queue_check=queue_check, trial_of=trial_of,
                                    experiment_id=experiment)
        self.scheduler.wake()
        return job

    def check_submittable(self, user: User, spec: JobSpec, *, snapshot: str | None) -> None:
        """What ``submit`` would refuse of ``spec`` whatever the moment (not the queue's room): a
        sweep's trials are checked so before the sweep starts."""
        spec, _environment, _dataset = self._check_spec(user, self.users.check_runtime(spec), snapshot=snapshot)
        job_experiments.for_submit(self.db, user, spec, create=False)

    def _check_spec(self, user: User, spec: JobSpec, *, snapshot: str | None,
                    pinned_environment: str | None = None) -> tuple[JobSpec, str | None, str | None]:
        """``submit``'s checks of ``spec`` that hold whatever the moment: ``(spec with its environment
        pinned, the environment's name, the pinned dataset's ref)``, else a clear refusal."""
        policy.check_satisfiable(spec.resources, self.capacity, nodes=spec.nodes, labels=spec.node_labels,
                                 quota=self.users.quota_of(user.id))
        if spec.workdir is not None and snapshot is None and not user.is_admin:
            # in place means in a folder of the server's disk, read and written as the server's user
            raise ModelyardError(ErrorCode.FORBIDDEN, "running in place (workdir with no snapshot) is for admins "
                                 "only; upload the folder as a snapshot instead (the CLI does)", field="workdir")
        check_webhooks(spec.webhooks, self.webhook_allow)
        spec, environment = self.pin_environment(user, spec) if spec.environment else (spec, pinned_environment)
        self._check_stored_secrets(user, spec)
        if snapshot is not None and (not is_snapshot_key(snapshot) or not self.storage.exists(snapshot)):
            raise ModelyardError(ErrorCode.INVALID, f"no snapshot {snapshot!r}; upload it first", field="snapshot")
        dataset = self.pin_dataset(spec.dataset, user).ref if spec.dataset else None
        return spec, environment, dataset

    def stop(self, user: User, job_id: int) -> Job:
        job = store_jobs.get_job(self.db, job_id, user=user)
        attempt = store_jobs.request_stop(self.db, job, actor=user.name)
        if attempt is not None:
            self.executor.cancel(attempt)
        job = store_jobs.get_job(self.db, job_id)
        if job.state.is_terminal():
            self.job_ended(job.id, job.state)
        return job

    def restart(self, user: User, job_id: int) -> Job:
        job = store_jobs.get_job(self.db, job_id, user=user)
        if job.kind == "run":
            raise store_jobs.no_process(job_id, "restarted")
        # the capacity may have changed since it was submitted (a cluster's nodes come and go)
        policy.check_satisfiable(job.resources, self.capacity, nodes=job.spec.nodes, labels=job.spec.node_labels,
                                 quota=self.users.quota_of(job.user_id))
        pinned, owner = job.dataset, get_user_by_name(self.db, job.owner) if job.dataset else None
        job = store_jobs.requeue(self.db, job, dataset_check=lambda: self.pin_dataset(pinned, owner) if pinned else None,
                                 actor=user.name, queue_check=self.users.queue_check(job.user_id, job.owner))
        self.scheduler.wake()
        return job

    def clone(
        self, user: User, job_id: int, *, resume: bool, command: list[str] | str | None, name: str | None,
        snapshot: str | None = None, params: dict[str, Any] | list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Job:
        """A new job like ``job_id``; ``resume``: it starts from that job's latest outputs
        (MODELYARD_RESUME_DIR); ``snapshot``: with this code (an uploaded snapshot's key) instead of
        the source's, for a second round with changed code."""
        source = store_jobs.get_job(self.db, job_id, user=user)
        if source.kind == "run":
            raise store_jobs.no_process(job_id, "cloned")
        data = source.spec.model_dump()
        if command is not None:
            data["command"] = command
        # the source's parameters and its tags as they are now, with the clone's own over them
        data["params"] = {**data["params"], **clone_params(params)}
        data["tags"] = [*source.tags, *(tags or [])]
        data["name"] = name or (f"{source.name} (resumed)" if resume else f"{source.name} (clone)")[:200]
        data["dataset"] = source.dataset  # the very version the source job read, not today's latest
        spec = JobSpec.model_validate(data)
        if source.sealed_secrets and source.user_id != user.id:
            raise ModelyardError(ErrorCode.INVALID, f"job {job_id} holds secrets of {source.owner}, given inline; "
                                 "only they may clone it", field="secrets")
        how = "resumed from" if resume else "cloned from"
        return self.submit(user, spec, snapshot=snapshot or source.snapshot_key, resume_from=source.id if resume else None,
                           sealed_secrets=source.sealed_secrets,  # the inline secrets' values go on with it
                           # the spec holds the image or requirements the source was pinned to, not today's
                           pinned_environment=source.environment, reason=f"{how} job {source.id}")

    # -- secrets (README "Secrets") --------------------------------------------------------------

    def _seal_inline_secrets(self, spec: JobSpec) -> str | None:
        inline = {n: v.get_secret_value() for n, v in spec.secrets.items() if v is not None}
        for name, value in inline.items():
            if value == MASK:
                raise ModelyardError(ErrorCode.INVALID, f"secret {name}: {MASK} is how a secret is shown back, not "
                                     f"its value; give the value, or null for your stored secret {name}",
                                     field="secrets")
        return self.secret_box.seal_map(inline)

    def _check_stored_secrets(self, user: User, spec: JobSpec) -> None:
        """Every stored secret a spec names must be the user's own: an unknown name is bad input."""
        names = [n for n, v in spec.secrets.items() if v is None]
        have = store_secrets.ciphertexts(self.db, user.id, names)
        for name in names:
            if name not in have:
                raise ModelyardError(ErrorCode.INVALID, f"you have no stored secret {name}; store it with "
                                     f"`modelyard secret set {name}`, or give NAME=VALUE", field="secrets")

    def set_secret(self, user: User, name: str, value: str) -> store_secrets.SecretInfo:
        for check, field in ((lambda: check_secret_name(name), "name"), (lambda: check_secret_value(value, name), "value")):
            try:
                check()
            except ValueError as e:
                raise ModelyardError(ErrorCode.INVALID, str(e), field=field) from None
        return store_secrets.put_secret(self.db, user.id, name, self.secret_box.seal(value))

    def secret_info(self, user: User, name: str) -> store_secrets.SecretInfo:
        info = store_secrets.get_secret(self.db, user.id, name)
        if info is None:
            raise not_found(f"secret {name}")
        return info

    def remove_secret(self, user: User, name: str) -> None:
        if not store_secrets.delete_secret(self.db, user.id, name):
            raise not_found(f"secret {name}")

    # -- environments -----------------------------------------------------------------------

    def pin_environment(self, user: User, spec: JobSpec) -> tuple[JobSpec, str]:
        """``spec`` with its named environment replaced by that environment's image or requirements,
        so a later change of the environment changes no submitted job; and the name. One the user
        cannot see is not_found, as one that does not exist."""
        assert spec.environment is not None
        try:
            env = store_environments.get_environment(self.db, spec.environment, user=user)
        except ModelyardError as e:
            raise ModelyardError(e.code, e.message, field="environment") from None
        data = spec.model_dump()
        data.update(environment=None, image=env.image, requirements=env.requirements)
        return JobSpec.model_validate(data), env.name

    # -- datasets ---------------------------------------------------------------------------

    def pin_dataset(self, ref: str, user: User | None) -> Manifest:
        """The version a job of ``user`` submitted with ``ref`` reads; an unknown one, or one
        ``user`` may not read (answered exactly alike), is bad input (422)."""
        try:
            if user is None:  # the job's owner is gone: nobody vouches for its access
                raise ModelyardError(ErrorCode.NOT_FOUND, f"dataset {parse_ref(ref).name} not found")
            return self.dataset_access.version(ref, user)
        except ModelyardError as e:
            if e.code is ErrorCode.NOT_FOUND:
                raise ModelyardError(ErrorCode.INVALID, e.message, field="dataset") from None
            raise

    def remove_dataset(self, ref: str, user: User) -> list[Manifest]:
        """Remove a version (or every version of a name) if ``user`` may; CONFLICT naming the
        jobs that use one. Who removed it goes into the dataset's history.

        The check for jobs using it and the removal of its manifest happen under the
        dataset's lock in one transaction, as a submit's check and its job row do
        (``store_jobs.lock_dataset``): whichever commits first, the other sees it. The
        files go after the commit, so the lock is not held while they are deleted."""
        r = parse_ref(ref)
        with self.db.write() as conn:
            store_jobs.lock_dataset(conn, r.name)
            self.dataset_access.may_change(conn, r.name, user, "remove it")  # under the lock: the owner now
            removed = remove_dataset(self.storage, self.datasets, ref, delete_data=False,
                                     in_use=lambda name, version: store_jobs.active_dataset_users(conn, name, version))
            self.dataset_access.removed(conn, r.name, removed, user)
        for m in removed:
            self.storage.delete_prefix(version_prefix(m.name, m.version))
        return removed

    # -- side effects -----------------------------------------------------------------------

    def job_started(self, job_id: int) -> None:
        """After a job's RUNNING is stored: its owner's emails and webhooks of ``started``."""
        self.notices.job_event(job_id, "started")

    def job_ended(self, job_id: int, state: JobState) -> None:
        """After a job's final state is stored: room for the next job, a console's token revoked, and its
        owner's emails and webhooks."""
        self.scheduler.wake()
        self.sweeps.wake()  # a trial's end: its objective, and room for the next trial
        try:
            job = store_jobs.get_job(self.db, job_id)
        except ModelyardError:
            job = None  # removed meanwhile
        if job is not None and job.spec.console is not None:
            revoke_console_token(self.db, job)
        event = EVENT_OF_STATE.get(state)
        if event is not None:
            self.notices.job_event(job_id, event)


def clone_params(params: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """A clone's ``--param`` list (or mapping), typed as a submit's are."""
    try:
        parsed = parse_params(params or {})
    except ValueError as e:
        raise ModelyardError(ErrorCode.INVALID, str(e), field="params") from None
    return parsed


def webhook_job(job: dict[str, Any]) -> dict[str, Any]:
    """The job as a webhook shows it: env values are the owner's secrets, and a receiver is not the owner.

    The webhooks' paths go too: a receiver's URL often is its credential (a chat hook's token)."""
    return {**job, "env": {k: "***" for k in job.get("env") or {}},
            "webhooks": [_origin(url) for url in job.get("webhooks") or []]}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/***"
