"""The tables. Rows are converted to typed records in ``records.py`` and nowhere else.

Times are float Unix seconds (UTC); states are the enum's string value, never
its position. Alembic migrations in ``migrations/`` create and evolve these.
"""
from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "users", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # the unprivileged uid this user's jobs run as on a shared server (MODELYARD_JOB_UIDS), once drawn
    sa.Column("job_uid", sa.Integer, unique=True),
    sa.Column("email", sa.String(320)),  # where their jobs' emails go (MODELYARD_SMTP_URL); NULL: none
    # which events reach them how: {"failed": ["notice", "email"], ...} as JSON; NULL: the defaults
    sa.Column("notify", sa.Text),
    # what an admin lets them hold at once (``user quota``); NULL: no limit
    sa.Column("quota_gpus", sa.Integer),
    sa.Column("quota_cpus", sa.Float),
    sa.Column("quota_queued", sa.Integer),  # jobs waiting in the queue
)

tokens = sa.Table(
    "tokens", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # sha256 of the token: a leaked database does not leak usable tokens
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("name", sa.String(100), nullable=False, default=""),
    # the token's first characters in clear, so a listing can say which token is which
    sa.Column("prefix", sa.String(16), nullable=False, default=""),
    sa.Column("expires_at", sa.Float),  # NULL: never (the embedded admin's token file)
)

# A web UI sign-in: the cookie holds a random id, the table its sha256, so the
# long-lived API token never sits in a browser and signing out ends the session.
sessions = sa.Table(
    "sessions", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("session_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # the token signed in with: revoking it ends the sessions it opened
    sa.Column("token_id", sa.Integer, sa.ForeignKey("tokens.id", ondelete="CASCADE")),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),  # absolute end, however active (never past the token's)
    sa.Column("last_seen", sa.Float, nullable=False),  # idle expiry counts from here
    # expired sessions are swept by this on every sign-in
    sa.Index("ix_sessions_expires", "expires_at"),
)

# Each user's key for signing their jobs' webhooks (HMAC-SHA256); kept in clear
# because the server signs with it and shows it back to its owner.
webhook_secrets = sa.Table(
    "webhook_secrets", metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("secret", sa.String(100), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, default=0),
    sa.Column("gpus", sa.Integer, nullable=False, default=0),
    sa.Column("cpus", sa.Float, nullable=False, default=1.0),
    sa.Column("memory", sa.BigInteger, nullable=False, default=0),
    sa.Column("max_runtime", sa.Float, nullable=False),  # copied from spec: the scheduler reads it per pass
    sa.Column("spec", sa.Text, nullable=False),  # JobSpec as JSON
    sa.Column("snapshot_key", sa.String(300)),
    sa.Column("resume_from", sa.Integer),
    sa.Column("retries_left", sa.Integer, nullable=False, default=0),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),  # number of the latest attempt
    sa.Column("exit_code", sa.Integer),
    sa.Column("message", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("queued_at", sa.Float, nullable=False),  # last (re)queue time: FIFO order
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("dataset", sa.String(200)),  # the pinned dataset version, "name:version", resolved at submit
    # the secrets given inline at submit, {name: value} as one token sealed with the server's key
    # (modelyard/secrets.py); the spec keeps only their names
    sa.Column("secrets", sa.Text),
    # the named environment the job was submitted with; its image or requirements are pinned in spec
    sa.Column("environment", sa.String(100)),
    sa.Column("nodes", sa.Integer, nullable=False, default=1, server_default="1"),  # copied from spec
    sa.Column("node_labels", sa.Text, nullable=False, default="", server_default=""),  # sorted k=v,k=v
    # ``rm`` or the retention policy removed its data; the row stays while its final/ is kept
    sa.Column("removed_at", sa.Float),
    # "job": a command the platform runs; "run": a run with no process, created through the MLflow
    # API by a script outside any job (README "MLflow"), which logs to it and ends it itself
    sa.Column("kind", sa.String(8), nullable=False, default="job", server_default="job"),
    # the MLflow experiment it belongs to (experiments.id); NULL: its owner's Default (MLflow's "0")
    sa.Column("experiment_id", sa.Integer),
    # a sweep's trial (README "Sweeps"): the sweep and the trial's number in its Optuna study
    sa.Column("sweep_id", sa.Integer),
    sa.Column("trial", sa.Integer),
    # MLflow's delete-run: hidden from runs/search (ACTIVE_ONLY) until restore-run; its data stays
    sa.Column("run_deleted_at", sa.Float),
    # the scheduler reads queued jobs in this order on every pass
    sa.Index("ix_jobs_state_priority", "state", "priority", "id"),
    sa.Index("ix_jobs_user", "user_id", "id"),
    # removing a dataset version asks which jobs use it; `dataset show` lists them
    sa.Index("ix_jobs_dataset", "dataset", "id"),
    sa.Index("ix_jobs_experiment", "experiment_id", "id"),
    # unique: a sweep's trial has at most one job, so a driver resumed after a restart never runs it twice
    sa.Index("ix_jobs_sweep", "sweep_id", "trial", unique=True),
)

# A job's structured parameters (``--param NAME=VALUE``): ``value`` as given (JSON text), ``num``
# the number it reads as (NULL: not a number), so the jobs table sorts and filters in SQL.
job_params = sa.Table(
    "job_params", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("num", sa.Float),
    sa.Index("ix_job_params_name", "name", "num"),
)

# A job's tags (``--tag``, ``modelyard tag ID add|rm``).
job_tags = sa.Table(
    "job_tags", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(64), primary_key=True),
    sa.Index("ix_job_tags_tag", "tag", "job_id"),
)

# A job's (or run's) MLflow tags, key -> value (``mlflow.set_tag``); its labels are ``job_tags``.
run_tags = sa.Table(
    "run_tags", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("key", sa.String(250), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# What a run read (``mlflow.log_input``): each dataset once per run, by its digest and context.
run_inputs = sa.Table(
    "run_inputs", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("dataset", sa.Text, nullable=False),  # MLflow's Dataset message as JSON
    sa.Column("tags", sa.Text, nullable=False, default="[]"),  # its InputTag list as JSON (e.g. mlflow.data.context)
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("job_id", "name", "digest", name="uq_run_inputs_dataset"),
)

# MLflow experiments (README "MLflow"): each user's own, by name; MLflow's experiment "0" (Default)
# is each user's jobs with no experiment_id, never stored.
experiments = sa.Table(
    "experiments", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("lifecycle_stage", sa.String(16), nullable=False, default="active"),  # "active" | "deleted"
    sa.Column("tags", sa.Text, nullable=False, default="{}"),  # key -> value as JSON
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "name", name="uq_experiments_owner_name"),
)

# MLflow 3's logged models (``mlflow.<flavor>.log_model``, README "MLflow"): each kept with the run
# that logged it (``job_id``), removed with it; its files lie with that run's MLflow artifacts, in the
# attempt that was the run's when it was created (``attempt``; NULL: a run with no process).
logged_models = sa.Table(
    "logged_models", metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # MLflow's form, "m-" and 32 hex digits
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("experiment_id", sa.Integer),  # NULL: its owner's Default ("0"), as jobs.experiment_id
    sa.Column("attempt", sa.Integer),
    sa.Column("name", sa.String(250), nullable=False),
    sa.Column("model_type", sa.String(250)),
    sa.Column("status", sa.String(16), nullable=False),  # PENDING, READY, UPLOAD_FAILED
    sa.Column("status_message", sa.Text),
    sa.Column("params", sa.Text, nullable=False, default="{}"),  # key -> value as JSON, each logged once
    sa.Column("tags", sa.Text, nullable=False, default="{}"),  # key -> value as JSON
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("deleted_at", sa.Float),  # MLflow's delete: gone from get and search, its files kept
    # search is by owner and experiment; the runs:/ lookup by run and name
    sa.Index("ix_logged_models_owner", "user_id", "experiment_id"),
    sa.Index("ix_logged_models_job", "job_id", "name"),
)

# ``log_outputs``: the runs a logged model is an output of, at which step (the run's ``outputs``).
logged_model_outputs = sa.Table(
    "logged_model_outputs", metadata,
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("model_id", sa.String(40), sa.ForeignKey("logged_models.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("step", sa.BigInteger, nullable=False, default=0),
)

# The MLflow model registry (README "MLflow model registry"): a registered model is its owner's, its
# name unique per owner; ``aliases`` (alias -> version) and ``tags`` as JSON. Its ids are never given
# twice (AUTOINCREMENT on SQLite): a version's files lie in the store under the model's id.
registered_models = sa.Table(
    "registered_models", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(250), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("tags", sa.Text, nullable=False, default="{}"),
    sa.Column("aliases", sa.Text, nullable=False, default="{}"),
    sa.Column("last_version", sa.Integer, nullable=False, default=0),  # versions are numbered once, never again
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "name", name="uq_registered_models_owner_name"),
    sqlite_autoincrement=True,
)

# A registered model's version: a copy of its source's files made when it was registered (under
# registry/ID/versions/N in the store), so removing the run or job it came from leaves it whole;
# ``job_id`` and ``model_id`` say where it came from and are kept after that run is gone.
model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("registered_model_id", sa.Integer, sa.ForeignKey("registered_models.id", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("job_id", sa.Integer),  # its source run, not a foreign key: the version outlives it
    sa.Column("model_id", sa.String(40)),  # its logged model, likewise
    sa.Column("description", sa.Text),
    sa.Column("stage", sa.String(16), nullable=False, default="None"),  # MLflow's deprecated stages
    sa.Column("tags", sa.Text, nullable=False, default="{}"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_model_versions_job", "job_id"),
)

# A search over parameters whose trials are ordinary jobs (README "Sweeps"); its Optuna study lives
# in Optuna's own tables (scheduler or services/sweeps.py), named ``study``.
sweeps = sa.Table(
    "sweeps", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # running, succeeded, stopped, failed
    sa.Column("spec", sa.Text, nullable=False),  # the sweep as submitted, JSON
    sa.Column("study", sa.String(200), nullable=False),
    sa.Column("snapshot_key", sa.String(300)),  # the code every trial runs (uploaded once, as a submit's)
    sa.Column("best_job_id", sa.Integer),
    sa.Column("message", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Index("ix_sweeps_user", "user_id", "id"),
    sa.Index("ix_sweeps_state", "state"),
)

# What happened to a user's jobs (the bell), kept until read; a removed job's stay with job_id NULL.
notices = sa.Table(
    "notices", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="SET NULL")),
    sa.Column("event", sa.String(16), nullable=False),  # started, succeeded, failed, stopped, timed_out, lost
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("link", sa.String(300)),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("read_at", sa.Float),  # NULL: unread
    sa.Index("ix_notices_user", "user_id", "read_at", "id"),
)

# What ``modelyard rm`` and the retention policy (MODELYARD_RETENTION) removed: the record outlives it.
removals = sa.Table(
    "removals", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer),  # no foreign key: the job itself may be gone
    sa.Column("user_id", sa.Integer),
    sa.Column("what", sa.String(32), nullable=False),  # outputs, logs, metrics, run folders, job
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),  # "rm" | "retention"
    sa.Column("actor", sa.String(100)),  # who asked; NULL: the platform (retention)
    sa.Column("time", sa.Float, nullable=False),
    sa.Index("ix_removals_time", "time"),
)

# Named environments (``modelyard environment create``): an admin's are offered to every
# user, a user's only to that user. Exactly one of image and requirements is set.
environments = sa.Table(
    "environments", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("image", sa.String(500)),
    sa.Column("requirements", sa.Text),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "name", name="uq_environments_owner_name"),
)

attempts = sa.Table(
    "attempts", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("gpus", sa.String(200), nullable=False, default=""),  # comma-joined indices
    sa.Column("cpuset", sa.Text, nullable=False, default="", server_default=""),  # comma-joined core indices
    # the allocation, one {"node", "gpus", "cores"} per node rank (jobs/nodes.py); gpus, cpuset: rank 0's
    sa.Column("nodes", sa.Text, nullable=False, default="", server_default=""),
    sa.Column("cpus", sa.Float, nullable=False, default=0),
    sa.Column("memory", sa.BigInteger, nullable=False, default=0),
    sa.Column("exit_code", sa.Integer),
    sa.Column("reason", sa.String(32)),
    sa.Column("message", sa.Text),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("executor", sa.String(16), nullable=False, default="local"),
    sa.Column("handle", sa.Text),  # executor-specific: pid and config path for local
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("ended_at", sa.Float),
    sa.Column("last_heartbeat", sa.Float, nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False, default=0),  # highest report batch stored
    sa.Column("log_count", sa.Integer, nullable=False, default=0),
    sa.Column("stop_requested", sa.Boolean, nullable=False, default=False),
    sa.UniqueConstraint("job_id", "number", name="uq_attempts_job_number"),
    sa.Index("ix_attempts_state", "state"),
)

# A multi-node attempt's node ranks past 0, one row each from its placement: each rank's
# supervisor has its own numbered report stream and heartbeat (rank 0's are the attempt row's).
attempt_ranks = sa.Table(
    "attempt_ranks", metadata,
    sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("rank", sa.Integer, primary_key=True),
    sa.Column("node", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # starting, running, or how it ended (a job state's value)
    sa.Column("last_seq", sa.Integer, nullable=False, default=0),  # highest report batch stored
    sa.Column("last_heartbeat", sa.Float, nullable=False),
    sa.Column("exit_code", sa.Integer),
    sa.Column("reason", sa.String(32)),
    sa.Column("ended_at", sa.Float),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("time", sa.Float, nullable=False),
    sa.Column("from_state", sa.String(16)),
    sa.Column("to_state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String(100)),  # the user who asked for the change; NULL: the platform itself
    sa.Index("ix_events_job", "job_id", "id"),
    # ids are cursors (the queue view, event streams): SQLite must never give a removed job's again
    sqlite_autoincrement=True,
)

# A user's stored secrets (`modelyard secret set`), each value sealed with the server's key;
# a job names them in its spec and gets their values when an attempt is launched.
secrets = sa.Table(
    "secrets", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.UniqueConstraint("user_id", "name", name="uq_secrets_user_name"),
)

log_lines = sa.Table(
    "log_lines", metadata,
    sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("n", sa.Integer, primary_key=True),  # line number within the attempt, from 0
    sa.Column("t", sa.Float, nullable=False),
    sa.Column("stream", sa.SmallInteger, nullable=False),  # 0 stdout, 1 stderr
    sa.Column("text", sa.Text, nullable=False),
    # the node rank whose supervisor sent it; no index of its own: an index per line would slow the
    # ingestion of every job for the sake of ``logs --node``, which reads one attempt's range of n anyway
    sa.Column("node_rank", sa.SmallInteger, nullable=False, default=0, server_default="0"),
)

# A metric series is stored in chunks: one row per series per report batch, its
# points as one blob of four float64 little-endian columns (value, step, epoch,
# t; a missing step or epoch is NaN), see ``db/series.py``. A million points
# are ~20 rows, so ingestion is a few inserts a batch and a series is read whole
# in one index range scan. The chunk's last point is kept in plain columns for
# the jobs table's "latest value" without decoding a blob.
metric_chunks = sa.Table(
    "metric_chunks", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("attempt_id", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("points", sa.LargeBinary, nullable=False),
    sa.Column("last_value", sa.Float, nullable=False),
    sa.Column("last_step", sa.BigInteger),
    sa.Column("last_epoch", sa.Integer),
    sa.Column("last_t", sa.Float, nullable=False),
    # a series is read whole, in insertion order, by (job, name)
    sa.Index("ix_metric_chunks_series", "job_id", "name", "id"),
)

system_metrics = sa.Table(
    "system_metrics", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("job_id", sa.Integer, nullable=False),
    sa.Column("attempt_id", sa.Integer, nullable=False),
    sa.Column("t", sa.Float, nullable=False),
    sa.Column("cpu_percent", sa.Float),
    sa.Column("memory_rss", sa.BigInteger),
    sa.Column("gpus", sa.Text),  # JSON list of per-GPU samples
    sa.Index("ix_system_metrics_job", "job_id", "id"),
)

# Who owns a dataset name and who may read it. The versions themselves are the
# manifests in the artifact store (datasets/index.py); a name in the store with
# no row here predates owners and is treated as the first admin's, private.
datasets = sa.Table(
    "datasets", metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("visibility", sa.String(8), nullable=False),  # "private" | "public"
    sa.Column("created_at", sa.Float, nullable=False),
    # a plain user's listing reads their own names and the public ones
    sa.Index("ix_datasets_owner", "owner_id"),
    sa.Index("ix_datasets_visibility", "visibility"),
)

# Who did what to a dataset (a version created or removed, visibility changed);
# deleted with its name's row, so a name taken again starts a fresh history.
dataset_events = sa.Table(
    "dataset_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("version", sa.String(64)),
    sa.Column("action", sa.String(16), nullable=False),  # "created" | "removed" | "visibility"
    sa.Column("actor_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("detail", sa.Text),
    sa.Column("time", sa.Float, nullable=False),
    sa.Index("ix_dataset_events_name", "name", "id"),
)
