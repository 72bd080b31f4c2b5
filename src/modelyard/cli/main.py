"""The ``modelyard`` Typer app: every command, registered in one list."""
from __future__ import annotations

import typer

from modelyard.cli import (
    admin, cleanup, compare, datasets, environments, jobs, models, nodes, notebook, notices, observe, secrets, submit,
    sweeps, tokens,
)
from modelyard.cli import users  # registers `user list`, `user quota`, `user admin` on admin.user_app
from modelyard.cli.errors import ModelyardGroup

app = typer.Typer(
    cls=ModelyardGroup,
    name="modelyard",
    help="modelyard: submit training code, watch logs and metric curves, keep every checkpoint.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Commands whose arguments end with a command line take everything after the
# first positional argument as that command, flags included.
_PASS_THROUGH = {"allow_interspersed_args": False}

app.command("submit", context_settings=_PASS_THROUGH)(submit.submit)
app.command("run", context_settings=_PASS_THROUGH)(submit.run)
app.command("jobs")(jobs.jobs)
app.command("show")(jobs.show)
app.command("logs")(observe.logs)
app.command("metrics")(observe.metrics)
app.command("stop")(jobs.stop)
app.command("restart")(jobs.restart)
app.command("clone")(jobs.clone)  # ID comes first, so options may follow it; the command goes after --
app.command("wait")(jobs.wait)
app.command("notebook")(notebook.notebook)
app.command("tag")(jobs.tag)
app.command("rm")(cleanup.rm)
app.command("download")(observe.download)
app.command("compare")(compare.compare)
app.command("nodes")(nodes.nodes)
app.command("usage")(users.usage)
app.add_typer(datasets.dataset_app, name="dataset")
app.add_typer(environments.environment_app, name="environment")
app.add_typer(admin.user_app, name="user")
app.add_typer(cleanup.admin_app, name="admin")
app.add_typer(secrets.secret_app, name="secret")
app.add_typer(tokens.token_app, name="token")
app.add_typer(sweeps.sweep_app, name="sweep")
app.command("sweeps")(sweeps.sweeps)
app.add_typer(models.models_app, name="models")
app.command("webhook-secret")(tokens.webhook_secret)
app.command("server")(admin.server)
app.command("notices")(notices.notices)
app.command("profile")(notices.profile)
app.add_typer(notices.notify_app, name="notify")
