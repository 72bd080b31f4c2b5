"""Which MLflow experiment a job's run is in (README "MLflow"): chosen at submit, or named once by its script.

At submit: the spec's ``experiment`` (a name; the owner's experiment of that name, created if
missing), else ``MLFLOW_EXPERIMENT_NAME`` or ``MLFLOW_EXPERIMENT_ID`` in its env, read as the MLflow
client reads them. None of those: the owner's Default (``jobs.experiment_id`` NULL), which the job's
script may leave once, by naming one of its owner's experiments through its run token
(``mlflow.set_experiment``: services/experiments.py). A run in an experiment never moves, so the
client's own check (the active experiment must be its run's) then refuses another.
"""
from __future__ import annotations

from modelyard.db import experiments as store
from modelyard.db import jobs as store_jobs
from modelyard.db.engine import Database
from modelyard.db.experiments import ACTIVE, DEFAULT_ID, Experiment
from modelyard.db.records import User
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs import JobSpec
from modelyard.jobs.spec import EXPERIMENT_ID_VAR, EXPERIMENT_NAME_VAR


def for_submit(db: Database, user: User, spec: JobSpec, *, create: bool = True) -> int | None:
    """The experiment a job submitted as ``spec`` starts in (None: Default); INVALID names what is wrong.
    ``create`` False: only the checks (a sweep's, before its trials), so a missing name is no experiment yet."""
    given = spec.env.get(EXPERIMENT_ID_VAR)
    by_id = _by_id(db, user, int(given)) if given is not None else None
    name = spec.experiment or spec.env.get(EXPERIMENT_NAME_VAR)
    field = "experiment" if spec.experiment else f"env.{EXPERIMENT_NAME_VAR}"
    if name is None:
        chosen = by_id
    else:
        if by_id is not None and by_id.name != name:
            raise ModelyardError(ErrorCode.INVALID, f"env {EXPERIMENT_ID_VAR} is experiment {by_id.id} "
                                 f"({by_id.name!r}), not {name!r}; give one of them", field=f"env.{EXPERIMENT_ID_VAR}")
        # after every check that could refuse the job
        chosen = store.ensure(db, user.id, name) if create else store.by_name(db, user.id, name)
    if chosen is not None and chosen.lifecycle_stage != ACTIVE:
        raise ModelyardError(ErrorCode.INVALID, f"experiment {chosen.name!r} is deleted; restore it "
                             "(MlflowClient().restore_experiment) or name another",
                             field=field if name is not None else f"env.{EXPERIMENT_ID_VAR}")
    if chosen is None or chosen.id == DEFAULT_ID:
        return None
    return chosen.id


def _by_id(db: Database, user: User, experiment_id: int) -> Experiment:
    found = store.get(db, user.id, experiment_id)
    if found is None:
        raise ModelyardError(ErrorCode.INVALID, f"env {EXPERIMENT_ID_VAR}: you have no experiment {experiment_id}",
                             field=f"env.{EXPERIMENT_ID_VAR}")
    return found


def current(db: Database, job_id: int) -> int:
    """The experiment the job's run is in now (0: its owner's Default)."""
    return store_jobs.get_job(db, job_id).experiment_id or DEFAULT_ID


def join(db: Database, job_id: int, experiment: Experiment) -> None:
    """The job's script named ``experiment`` (one of its owner's): its run, while still in Default, goes
    there if it is active."""
    if experiment.id != DEFAULT_ID and experiment.lifecycle_stage == ACTIVE:
        store_jobs.join_experiment(db, job_id, experiment.id)
