"""Configuration from the environment, read once into a typed object and passed in.

| variable | default |
| --- | --- |
| MODELYARD_HOME | ~/.modelyard |
| MODELYARD_DATABASE_URL | sqlite:///$MODELYARD_HOME/modelyard.db |
| MODELYARD_STORAGE_URL | file://$MODELYARD_HOME/artifacts |
| MODELYARD_CAPACITY | detected (NVML, psutil), e.g. "gpus=0,cpus=2,memory=8G" |
| MODELYARD_HEARTBEAT_TIMEOUT | 60 (seconds of supervisor silence before an attempt is lost) |
| MODELYARD_WEBHOOKS | comma-separated URLs POSTed on every job's final state |
| MODELYARD_WEBHOOK_EVENTS | the job events MODELYARD_WEBHOOKS are POSTed on, e.g. "started,failed" (default: every end) |
| MODELYARD_SMTP_URL | unset; smtp://USER:PASS@HOST:PORT?from=ADDR (STARTTLS if offered) or smtps://… : job emails |
| MODELYARD_PUBLIC_URL | the URL people reach the web UI at (links in emails); default MODELYARD_SERVER_URL |
| MODELYARD_MAX_SNAPSHOT | 200M (largest workdir snapshot accepted, compressed and unpacked) |
| MODELYARD_MAX_SNAPSHOT_FILES | 100000 (most files a snapshot may hold) |
| MODELYARD_SECRET_KEY | $MODELYARD_HOME/secret.key (Fernet key(s) that seal stored secrets; modelyard/secrets.py) |
| MODELYARD_MAX_DATASET_UPLOAD | 20G (largest dataset upload, the tar as sent) |
| MODELYARD_MAX_DATASET_UNPACKED | 50G (what an uploaded tar's members may hold, in total) |
| MODELYARD_MAX_DATASET_MEMBERS | 1000000 (entries in an uploaded tar) |
| MODELYARD_MAX_DATASET_RATIO | 100 (times its size a compressed upload may unpack to, past 64 MiB) |
| MODELYARD_MAX_ARRAY_BYTES | 4G (bytes one .npz array or IDX file may declare in its header) |
| MODELYARD_MAX_DATASET_RECORDS | 50000000 (rows one .npz array or IDX file may declare) |
| MODELYARD_MAX_RECORD_BYTES | 64M (bytes one row of such an array may declare) |
| MODELYARD_WEBHOOK_ALLOW | private/loopback networks webhooks may reach, e.g. "10.0.0.0/8,127.0.0.1/32" |
| MODELYARD_WEBHOOK_SECRET | signs the server-wide MODELYARD_WEBHOOKS (job webhooks: the owner's secret) |
| MODELYARD_TOKEN_TTL | 90d (lifetime of a new API token; 0: never expires) |
| MODELYARD_SESSION_IDLE, MODELYARD_SESSION_MAX | 12h, 7d (a web sign-in ends idle / in any case) |
| MODELYARD_AUTH_FAILURES | 10/minute (failed sign-ins and bad tokens per client address, then 429) |
| MODELYARD_BEHIND_TLS_PROXY | off; 1: Secure cookies, X-Forwarded-* trusted from MODELYARD_TRUSTED_PROXIES |
| MODELYARD_TRUSTED_PROXIES | 127.0.0.1 (the proxy's addresses, when behind one) |
| MODELYARD_VENV_CACHE | $MODELYARD_HOME/cache/venvs (the machine's `--requirements` virtualenvs) |
| MODELYARD_VENV_CACHE_SIZE | 20G (least recently used venvs no job holds are evicted past it) |
| MODELYARD_VENV_PYTHON | the server's Python (the interpreter job venvs are made with) |
| MODELYARD_URL, MODELYARD_TOKEN | the client's server and token (no URL: embedded server) |
| MODELYARD_JOB_UIDS | unset; e.g. 61000-61999: each owner's jobs run as their own uid of that range (server as root) |
| MODELYARD_NODE_LABELS | unset; the local machine's labels for `--node-label`, e.g. "gpu=h100,zone=a" |
| MODELYARD_EXECUTOR | local; ray: supervisors run on a Ray cluster (README "Running on a cluster") |
| MODELYARD_RAY_ADDRESS | auto (the Ray cluster the server joins as a driver, with MODELYARD_EXECUTOR=ray) |
| MODELYARD_RETENTION | unset; e.g. "outputs=30d,logs=90d,metrics=90d,jobs=365d": ended jobs' data past that age is removed (final/ only with final=) |
| MODELYARD_SERVER_URL | the URL the server listens on (the URL supervisors report to: on a cluster, one every node reaches) |
| MODELYARD_DEFAULT_QUOTA | unset; the quota of a user an admin set none for, e.g. "gpus=4,cpus=16,queued=100" |
| MODELYARD_FAIRSHARE_HALFLIFE | 7d (how fast past usage is forgotten by fair share, as Slurm's PriorityDecayHalfLife) |
| MODELYARD_MAX_RUNTIME_CAP | 72h (the longest --max-runtime a submit may ask; the default max runtime is held to it) |
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from modelyard.datasets.bounds import Limits
from modelyard.errors import ErrorCode, ModelyardError
from modelyard.jobs.spec import END_EVENTS, JOB_EVENTS
from modelyard.jobs.units import parse_duration, parse_size
from modelyard.mail import parse_smtp_url

JOB_UIDS_FIELD = "MODELYARD_JOB_UIDS"
RETENTION_FIELD = "MODELYARD_RETENTION"
# what MODELYARD_RETENTION may name: an ended job's outputs (never final/), its log, its metric series and
# samples, the job itself (its row too, unless its final/ is kept), and final/ (only when named)
RETENTION_KINDS = ("outputs", "logs", "metrics", "jobs", "final")


def _count(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or int(raw) < 1:
        raise ModelyardError(ErrorCode.INVALID, f"must be a whole number >= 1, not {raw!r}", field=name)
    return int(raw)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    storage_url: str
    capacity: str | None = None
    heartbeat_timeout: float = 60.0
    webhooks: tuple[str, ...] = ()
    max_snapshot_bytes: int = 200 * 1024 * 1024
    max_snapshot_files: int = 100_000
    max_artifact_bytes: int = 5 * 1024**3  # one file the MLflow client uploads (MODELYARD_MAX_ARTIFACT)
    stop_grace: float = 10.0
    # URL prefixes any user may import a dataset from; every other source the
    # server reads (its own disk, any other URL, read with its credentials) is admin-only
    dataset_sources: tuple[str, ...] = ()
    secret_key: str | None = None  # MODELYARD_SECRET_KEY; None: $MODELYARD_HOME/secret.key
    # what one dataset source may make the server hold (datasets/bounds.py)
    dataset_limits: Limits = field(default_factory=Limits)
    # private, loopback and link-local networks a job's webhook may still reach ("10.0.0.0/8", ...)
    webhook_allow: tuple[str, ...] = ()
    webhook_secret: str | None = None  # signs the server-wide webhooks
    token_ttl: float = 90 * 86400.0  # 0: new tokens never expire
    session_idle: float = 12 * 3600.0
    session_max: float = 7 * 86400.0
    auth_failures: str = "10/minute"  # a `limits` rate: failures per client address
    behind_tls_proxy: bool = False
    trusted_proxies: str = "127.0.0.1"
    venv_cache: Path | None = None  # None: home/cache/venvs
    venv_cache_size: int = 20 * 1024**3
    venv_python: str | None = None  # None: the server's (and so the supervisor's) sys.executable
    # (first, last) uid of the range jobs run as, one per owner; None: jobs run as the server's user
    job_uids: tuple[int, int] | None = None
    node_labels: str | None = None  # MODELYARD_NODE_LABELS: the local node's labels
    executor: str = "local"  # "local" or "ray"
    ray_address: str = "auto"
    server_url: str | None = None  # MODELYARD_SERVER_URL; None: the URL the server listens on
    webhook_events: tuple[str, ...] = END_EVENTS  # the events the server-wide webhooks are sent on
    smtp_url: str | None = None  # MODELYARD_SMTP_URL (modelyard/mail.py); None: no email is sent
    public_url: str | None = None  # MODELYARD_PUBLIC_URL; None: server_url
    # MODELYARD_DEFAULT_QUOTA as {"gpus": 4, "cpus": 16, "queued": 100}: what a user with no quota of their own has
    default_quota: dict[str, float] = field(default_factory=dict)
    fairshare_halflife: float = 7 * 86400.0
    max_runtime_cap: float = 72 * 3600.0
    # what of an ended job goes how long after its end (MODELYARD_RETENTION): {"outputs": 2592000.0, ...}
    retention: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def runs_dir(self) -> Path:
        """Where supervisors unpack code and write outputs on this machine."""
        return self.home / "runs"

    @property
    def venv_cache_dir(self) -> Path:
        return self.venv_cache or self.home / "cache" / "venvs"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        home = Path(env.get("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser().resolve()
        return cls(
            home=home,
            database_url=env.get("MODELYARD_DATABASE_URL") or f"sqlite:///{home / 'modelyard.db'}",
            storage_url=env.get("MODELYARD_STORAGE_URL") or (home / "artifacts").as_uri(),
            capacity=env.get("MODELYARD_CAPACITY") or None,
            heartbeat_timeout=parse_duration(env.get("MODELYARD_HEARTBEAT_TIMEOUT", "60")),
            webhooks=tuple(u.strip() for u in env.get("MODELYARD_WEBHOOKS", "").split(",") if u.strip()),
            max_snapshot_bytes=parse_size(env.get("MODELYARD_MAX_SNAPSHOT", "200M")),
            max_snapshot_files=_count(env, "MODELYARD_MAX_SNAPSHOT_FILES", 100_000),
            max_artifact_bytes=parse_size(env.get("MODELYARD_MAX_ARTIFACT", "5G")),
            stop_grace=parse_duration(env.get("MODELYARD_STOP_GRACE", "10")),
            dataset_sources=tuple(u.strip() for u in env.get("MODELYARD_DATASET_SOURCES", "").split(",")
                                  if u.strip()),
            secret_key=env.get("MODELYARD_SECRET_KEY") or None,
            dataset_limits=_dataset_limits(env),
            webhook_allow=tuple(n.strip() for n in env.get("MODELYARD_WEBHOOK_ALLOW", "").split(",") if n.strip()),
            webhook_secret=env.get("MODELYARD_WEBHOOK_SECRET") or None,
            token_ttl=parse_duration(env.get("MODELYARD_TOKEN_TTL", "90d")),
            session_idle=parse_duration(env.get("MODELYARD_SESSION_IDLE", "12h")),
            session_max=parse_duration(env.get("MODELYARD_SESSION_MAX", "7d")),
            auth_failures=env.get("MODELYARD_AUTH_FAILURES") or "10/minute",
            behind_tls_proxy=env.get("MODELYARD_BEHIND_TLS_PROXY", "").lower() in ("1", "true", "yes", "on"),
            trusted_proxies=env.get("MODELYARD_TRUSTED_PROXIES") or "127.0.0.1",
            venv_cache=Path(env["MODELYARD_VENV_CACHE"]).expanduser().resolve() if env.get("MODELYARD_VENV_CACHE")
            else None,
            venv_cache_size=parse_size(env.get("MODELYARD_VENV_CACHE_SIZE", "20G")),
            venv_python=env.get("MODELYARD_VENV_PYTHON") or None,
            job_uids=parse_uid_range(env.get(JOB_UIDS_FIELD, "")),
            node_labels=env.get("MODELYARD_NODE_LABELS") or None,
            executor=_executor(env.get("MODELYARD_EXECUTOR") or "local"),
            ray_address=env.get("MODELYARD_RAY_ADDRESS") or "auto",
            server_url=_server_url(env.get("MODELYARD_SERVER_URL") or None),
            webhook_events=_webhook_events(env.get("MODELYARD_WEBHOOK_EVENTS", "")),
            smtp_url=_smtp_url(env.get("MODELYARD_SMTP_URL") or None),
            public_url=_server_url(env.get("MODELYARD_PUBLIC_URL") or None, "MODELYARD_PUBLIC_URL"),
            default_quota=parse_quota(env.get("MODELYARD_DEFAULT_QUOTA", ""), field="MODELYARD_DEFAULT_QUOTA"),
            fairshare_halflife=_positive_duration(env, "MODELYARD_FAIRSHARE_HALFLIFE", "7d"),
            max_runtime_cap=_positive_duration(env, "MODELYARD_MAX_RUNTIME_CAP", "72h"),
            retention=parse_retention(env.get(RETENTION_FIELD, "")),
        )


EXECUTORS = ("local", "ray")


def _executor(name: str) -> str:
    if name not in EXECUTORS:
        raise ModelyardError(ErrorCode.INVALID, f"unknown executor {name!r} (use {' or '.join(EXECUTORS)})",
                             field="MODELYARD_EXECUTOR")
    return name


def _server_url(url: str | None, name: str = "MODELYARD_SERVER_URL") -> str | None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ModelyardError(ErrorCode.INVALID, f"not an http(s) URL: {url!r}", field=name)
    return url.rstrip("/") if url else None


def _webhook_events(text: str) -> tuple[str, ...]:
    events = tuple(e.strip() for e in text.split(",") if e.strip())
    for event in events:
        if event not in JOB_EVENTS:
            raise ModelyardError(ErrorCode.INVALID, f"unknown event {event!r}: use {', '.join(JOB_EVENTS)}",
                                 field="MODELYARD_WEBHOOK_EVENTS")
    return events or END_EVENTS


def _smtp_url(url: str | None) -> str | None:
    if url is not None:
        parse_smtp_url(url)  # a mistake is found at start, not at the first failed job
    return url


def _dataset_limits(env: dict[str, str]) -> Limits:
    d = Limits()
    return Limits(
        upload=parse_size(env.get("MODELYARD_MAX_DATASET_UPLOAD") or d.upload),
        unpacked=parse_size(env.get("MODELYARD_MAX_DATASET_UNPACKED") or d.unpacked),
        members=int(env.get("MODELYARD_MAX_DATASET_MEMBERS") or d.members),
        ratio=int(env.get("MODELYARD_MAX_DATASET_RATIO") or d.ratio),
        array=parse_size(env.get("MODELYARD_MAX_ARRAY_BYTES") or d.array),
        records=int(env.get("MODELYARD_MAX_DATASET_RECORDS") or d.records),
        record=parse_size(env.get("MODELYARD_MAX_RECORD_BYTES") or d.record),
    )


QUOTA_KEYS = ("gpus", "cpus", "queued")


def parse_quota(text: str, *, field: str) -> dict[str, float]:
    """``"gpus=4,cpus=16,queued=100"`` as {"gpus": 4, "cpus": 16.0, "queued": 100}; empty as {}."""
    out: dict[str, float] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        key, _, raw = item.partition("=")
        key = key.strip()
        if key not in QUOTA_KEYS:
            raise ModelyardError(ErrorCode.INVALID, f"unknown quota {key!r} in {text!r} (use "
                                 f"{', '.join(QUOTA_KEYS)})", field=field)
        try:
            value = float(raw) if key == "cpus" else int(raw)
        except ValueError:
            value = -1
        if not value >= 0:
            raise ModelyardError(ErrorCode.INVALID, f"{key}={raw.strip()!r}: use a number >= 0", field=field)
        out[key] = value
    return out


def _positive_duration(env: dict[str, str], name: str, default: str) -> float:
    try:
        value = parse_duration(env.get(name) or default)
    except ValueError as e:
        raise ModelyardError(ErrorCode.INVALID, str(e), field=name) from None
    if value <= 0:
        raise ModelyardError(ErrorCode.INVALID, f"must be longer than 0, not {env.get(name)!r}", field=name)
    return value


def parse_retention(text: str) -> dict[str, float]:
    """``"outputs=30d,logs=90d"`` as ``{"outputs": 2592000.0, "logs": 7776000.0}``; empty: keep everything."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, sep, age = part.partition("=")
        kind = kind.strip()
        if not sep or kind not in RETENTION_KINDS:
            raise ModelyardError(ErrorCode.INVALID, f"{part!r} is not KIND=AGE with KIND one of "
                                 f"{', '.join(RETENTION_KINDS)} (e.g. outputs=30d,logs=90d)", field=RETENTION_FIELD)
        try:
            seconds = parse_duration(age)
        except ValueError as e:
            raise ModelyardError(ErrorCode.INVALID, f"{kind}: {e}", field=RETENTION_FIELD) from None
        if seconds <= 0:
            raise ModelyardError(ErrorCode.INVALID, f"{kind}: the age must be more than 0",
                                 field=RETENTION_FIELD)
        out[kind] = seconds
    return out


def parse_uid_range(text: str) -> tuple[int, int] | None:
    """``"61000-61999"`` as (61000, 61999); empty as None."""
    text = text.strip()
    if not text:
        return None
    first, sep, last = text.partition("-")
    try:
        lo, hi = int(first), int(last if sep else first)
    except ValueError:
        lo = hi = -1
    if lo < 1000 or hi < lo or hi >= 2**31:
        raise ModelyardError(ErrorCode.INVALID, f"{JOB_UIDS_FIELD}={text!r}: use a range of unprivileged uids "
                             "no account uses, e.g. 61000-61999", field=JOB_UIDS_FIELD)
    return lo, hi
