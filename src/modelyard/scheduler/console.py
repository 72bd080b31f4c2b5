"""What a console job's attempt is launched with, beside any job's (jobs/console.py, README "Notebook consoles").

JupyterLab's port, path and token, and a user token for ``modelyard.submit`` from a cell
(``MODELYARD_URL``, ``MODELYARD_TOKEN``): made at each launch, so it expires with the attempt's max
runtime, and revoked when the job ends (``revoke_console_token``, called by the platform).
"""
from __future__ import annotations

import time

from modelyard.db import users as store_users
from modelyard.db.engine import Database
from modelyard.db.records import Attempt, Job
from modelyard.db.users import hash_token
from modelyard.jobs import console

# the token outlives the max runtime by this much: the supervisor's stop grace and final sync
TOKEN_SLACK = 600.0


def console_variables(job: Job, attempt: Attempt, token: str, *, server_url: str | None,
                      db: Database | None) -> tuple[dict[str, str], dict[str, str]]:
    """The console's variables: (env, secrets). Secrets are shown as *** wherever a job's are."""
    assert job.spec.console is not None
    digest = hash_token(token)
    # the host is the platform's too: loopback here, a node's address where the Ray executor launches it
    env = {console.PORT_VAR: str(console.console_port(attempt.id, digest)), console.HOST_VAR: console.HOST,
           console.BASE_URL_VAR: console.base_url(job.id),
           console.IDLE_VAR: str(job.spec.console.idle_timeout)}
    secrets = {console.TOKEN_VAR: console.console_token(attempt.id, digest)}
    if server_url and db is not None:
        revoke_console_token(db, job)  # an earlier attempt's
        env["MODELYARD_URL"] = server_url
        secrets["MODELYARD_TOKEN"] = store_users.add_token(
            db, job.user_id, name=console.TOKEN_NAME.format(job_id=job.id),
            expires_at=time.time() + job.spec.max_runtime + TOKEN_SLACK)
    return env, secrets


def revoke_console_token(db: Database, job: Job) -> int:
    """Remove the user token made for console ``job``'s cells; how many went."""
    return store_users.remove_named_tokens(db, job.user_id, console.TOKEN_NAME.format(job_id=job.id))
