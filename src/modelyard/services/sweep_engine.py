"""How a running sweep's trials are kept in flight, through its Optuna study (the driver,
services/sweep_driver.py, runs a pass over each running sweep).

The study (its trials, their parameters, intermediate values and outcomes) lives in Optuna's RDB
storage on our own database server, apart from our tables: Optuna stamps the Alembic version of
its own schema into a table named ``alembic_version``, the name our migrations use, so in our
schema it would take our revision for its own (and refuse to start) or overwrite it. On
PostgreSQL its tables are in the schema ``optuna`` (``search_path``); on SQLite in a file beside
ours (``modelyard-optuna.db``).

A pass over a sweep, under one lock (a stop waits for it):
- a trial Optuna gave out (RUNNING) with no job gets its job: after a restart between ask and
  submit no trial is lost; a trial with a job is never asked again, and the unique index on
  ``jobs(sweep_id, trial)`` makes a second job for one trial impossible;
- a trial's new points of the metric series are reported to its study (``trial.report``); one the
  pruner says is bad is marked PRUNED, then its job stopped and its message says why;
- a trial whose job ended is told its objective (the series' last value), or FAIL;
- new trials are asked while fewer than ``parallel`` are in flight and fewer than the sweep's
  limit were asked; when none is left in flight the sweep ends, with its best trial's job.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.sweep import CategoricalParam, FloatParam, SweepSpec
from modelyard.db import reports
from modelyard.db import sweeps as store_sweeps
from modelyard.db.engine import Database
from modelyard.db.records import Job, User
from modelyard.db.sweeps import Sweep
from modelyard.db.users import get_user_by_name

OPTUNA_SCHEMA = "optuna"
Submit = Callable[..., Job]  # Platform.submit
Stop = Callable[[User, int], Job]  # Platform.stop


def optuna_storage(db: Database) -> optuna.storages.RDBStorage:
    """Optuna's storage for ``db``, its tables kept apart from ours (module docstring)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if db.is_sqlite:
        return optuna.storages.RDBStorage(optuna_sqlite_url(db.url), engine_kwargs={"connect_args": {"timeout": 30}})
    with db.write() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {OPTUNA_SCHEMA}"))  # a constant: DDL takes no bound names
    return optuna.storages.RDBStorage(db.url, engine_kwargs={
        "connect_args": {"options": f"-c search_path={OPTUNA_SCHEMA}"}, "pool_pre_ping": True})


def optuna_sqlite_url(url: str) -> str:
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:":
        return "sqlite://"
    return f"sqlite:///{Path(path).with_name(Path(path).stem + '-optuna.db')}"


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Each parameter as Optuna samples it; a grid's as the choice of its points."""
    if spec.method == "grid":
        return {name: CategoricalDistribution(values) for name, values in spec.grid().items()}
    out: dict[str, BaseDistribution] = {}
    for name, p in spec.parameters.items():
        if isinstance(p, CategoricalParam):
            out[name] = CategoricalDistribution(p.values)
        elif isinstance(p, FloatParam):
            out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        else:
            out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid, told its trials outside ``Study.optimize``: once the grid is covered Optuna's
    own stops the study, which raises outside ``optimize``; the driver stops at the grid's size."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        return None


def sampler_of(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.method == "grid":
        return _Grid(spec.grid(), seed=spec.seed)  # type: ignore[arg-type]
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


def pruner_of(spec: SweepSpec) -> optuna.pruners.BasePruner:
    es = spec.early_stopping
    if es is None:
        return optuna.pruners.NopPruner()
    if es.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=es.startup_trials, n_warmup_steps=es.warmup_steps)
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=es.min_steps, reduction_factor=es.reduction_factor)


class SweepEngine:
    """A pass over one sweep (``step``), its study, its end; every call under the driver's ``lock``."""

    def __init__(self, db: Database, *, submit: Submit, stop: Stop, lock: threading.RLock) -> None:
        self.db = db
        self._submit = submit
        self._stop_job = stop
        self.lock = lock
        self._storage: optuna.storages.RDBStorage | None = None
        self._studies: dict[int, optuna.Study] = {}
        self._cursors: dict[int, int] = {}  # job id -> the last metric chunk read of its objective series

    def close(self) -> None:
        if self._storage is not None:
            self._storage.engine.dispose()

    # -- the study ------------------------------------------------------------------------

    @property
    def storage(self) -> optuna.storages.RDBStorage:
        with self.lock:
            if self._storage is None:
                self._storage = optuna_storage(self.db)
            return self._storage

    def study(self, sweep: Sweep) -> optuna.Study:
        """The sweep's study (made on first use); a running sweep's is kept, with its sampler's state."""
        with self.lock:
            study = self._studies.get(sweep.id)
            if study is None:
                how = {"storage": self.storage, "study_name": sweep.study, "sampler": sampler_of(sweep.spec),
                       "pruner": pruner_of(sweep.spec)}
                try:
                    study = optuna.load_study(**how)
                except KeyError:  # not made yet: a new sweep, or a restart right after its row was written
                    study = optuna.create_study(**how, direction=sweep.spec.metric.goal, load_if_exists=True)
                if sweep.state == "running":
                    self._studies[sweep.id] = study
            return study

    def _ended(self, sweep_id: int) -> None:
        self._studies.pop(sweep_id, None)

    # -- one pass ---------------------------------------------------------------------------

    def step(self, sweep_id: int) -> None:
        with self.lock:
            sweep = store_sweeps.get_sweep(self.db, sweep_id)
            if sweep.state != "running":
                return
            owner = get_user_by_name(self.db, sweep.owner)
            assert owner is not None  # a user's sweeps go with them (ON DELETE CASCADE)
            study = self.study(sweep)
            try:
                if self._follow_all(sweep, owner, study):
                    self._ask_more(sweep, owner, study)
            except ModelyardError as e:  # a trial that can never be queued: the sweep cannot go on
                self.end(sweep, owner, "failed", message=e.message)
                return
            self._finish_if_done(sweep, study)

    def _follow_all(self, sweep: Sweep, owner: User, study: optuna.Study) -> bool:
        """Follow every trial; False if one waits for room in the owner's queue (so none is asked)."""
        jobs = store_sweeps.trial_jobs(self.db, sweep.id)
        for t in study.get_trials(deepcopy=False):
            job = jobs.get(t.number)
            if t.state is TrialState.RUNNING:
                if job is None:
                    if not self._submit_trial(sweep, owner, t.number, t.params):
                        return False  # the owner's queue is full: the rest waits too
                else:
                    self._follow(sweep, owner, study, t, job)
            elif t.state is TrialState.PRUNED and job is not None and job.state.is_terminal():
                step = t.user_attrs.get("pruned_at")
                if not (job.message or "").startswith("pruned by"):
                    store_sweeps.mark_pruned(self.db, job.id, f"pruned by sweep {sweep.id} at step {step}")
        return True

    def _ask_more(self, sweep: Sweep, owner: User, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        jobs = store_sweeps.trial_jobs(self.db, sweep.id)
        # a pruned trial's job holds its resources until it has stopped: it is still in flight
        active = sum(t.state is TrialState.RUNNING or (t.number in jobs and not jobs[t.number].state.is_terminal())
                     for t in trials)
        asked, limit = len(trials), sweep.spec.trial_limit()
        wanted = distributions(sweep.spec)
        while active < sweep.spec.parallel and asked < limit:
            trial = study.ask(fixed_distributions=wanted)
            active, asked = active + 1, asked + 1
            if not self._submit_trial(sweep, owner, trial.number, trial.params):
                return

    def _submit_trial(self, sweep: Sweep, owner: User, number: int, params: dict[str, Any]) -> bool:
        """Queue the trial's job; False while the owner's queue has no room (quota). A trial that
        already has its job is done; any other refusal is the sweep's end (ModelyardError)."""
        spec = sweep.spec.trial_spec(sweep.id, number, params)
        try:
            self._submit(owner, spec, snapshot=sweep.snapshot_key, trial_of=(sweep.id, number),
                         reason=f"trial {number} of sweep {sweep.id}")
        except ModelyardError as e:
            if e.field == "trial":
                return True
            if e.field is not None and e.field.startswith("quota"):
                return False
            raise ModelyardError(e.code, f"trial {number}: {e.message}", field=e.field) from None
        return True

    def _follow(self, sweep: Sweep, owner: User, study: optuna.Study, t: FrozenTrial, job: Job) -> None:
        metric = sweep.spec.metric.name
        last_step = self._report(study, t, job, metric)
        trial = optuna.trial.Trial(study, t._trial_id)
        # asked even of a trial that has ended: successive halving records its rungs when asked
        prune = last_step is not None and sweep.spec.early_stopping is not None and trial.should_prune()
        if job.state.is_terminal():
            value = reports.latest_points(self.db, [job.id], metric).get(job.id, {}).get("value")
            if job.state.value == "succeeded" and value is not None and math.isfinite(value):
                study.tell(t.number, value)
                self._keep_best(sweep, study)
            else:
                study.tell(t.number, state=TrialState.FAIL)
            self._cursors.pop(job.id, None)
        elif prune:
            trial.set_user_attr("pruned_at", last_step)
            study.tell(t.number, state=TrialState.PRUNED)  # recorded before the job is stopped
            self._cursors.pop(job.id, None)
            try:
                self._stop_job(owner, job.id)
            except ModelyardError as e:
                if e.code is not ErrorCode.CONFLICT:  # CONFLICT: it ended meanwhile
                    raise

    def _report(self, study: optuna.Study, t: FrozenTrial, job: Job, metric: str) -> int | None:
        """Report the job's new points of ``metric`` to its trial; the last new step, or None."""
        cursor, cols = reports.read_series(self.db, job.id, metric, after_id=self._cursors.get(job.id, 0))
        self._cursors[job.id] = cursor
        known = dict(t.intermediate_values)
        last = None
        for value, step in zip(cols[0].tolist(), cols[1].tolist()):
            at = int(step) if math.isfinite(step) else len(known)  # a point with no step: the next one
            if at in known or not math.isfinite(value):
                continue
            study._storage.set_trial_intermediate_value(t._trial_id, at, value)
            known[at] = value
            last = at
        return last

    def _keep_best(self, sweep: Sweep, study: optuna.Study) -> None:
        best = study.best_trial
        job = store_sweeps.trial_jobs(self.db, sweep.id).get(best.number)
        store_sweeps.set_best(self.db, sweep.id, job.id if job else None)

    def _finish_if_done(self, sweep: Sweep, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        if any(t.state is TrialState.RUNNING for t in trials) or len(trials) < sweep.spec.trial_limit():
            return
        jobs = store_sweeps.trial_jobs(self.db, sweep.id)
        if any(not j.state.is_terminal() for j in jobs.values()):
            return  # a pruned trial's job still stopping: it ends, and says why, before the sweep does
        done = [t for t in trials if t.state is TrialState.COMPLETE]
        self._ended(sweep.id)
        if not done:
            store_sweeps.end_sweep(self.db, sweep.id, "failed", message=(
                f"no trial succeeded with a value of {sweep.spec.metric.name}"))
            return
        best = study.best_trial
        job = jobs.get(best.number)
        store_sweeps.end_sweep(self.db, sweep.id, "succeeded", best_job_id=job.id if job else None,
                               message=f"best: trial {best.number}, {sweep.spec.metric.name} = {best.value:g}")

    def end(self, sweep: Sweep, user: User, state: str, *, message: str) -> bool:
        """End the sweep (``stopped`` or ``failed``): its trials' jobs are stopped, its running trials FAIL."""
        with self.lock:
            if not store_sweeps.end_sweep(self.db, sweep.id, state, message=message):
                return False
            for job in store_sweeps.trial_jobs(self.db, sweep.id).values():
                if not job.state.is_terminal():
                    try:
                        self._stop_job(user, job.id)
                    except ModelyardError as e:
                        if e.code is not ErrorCode.CONFLICT:
                            raise
            study = self.study(sweep)
            self._ended(sweep.id)
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                study.tell(t.number, state=TrialState.FAIL)
            return True
