"""The process a notebook console job runs (``python -m modelyard.notebooks.console``): JupyterLab.

It serves at the address (127.0.0.1, or its Ray node's), the port, under the path, and with the token
the platform gave it (jobs/console.py says how the server derives them, so none is read back from the job), from
``$MODELYARD_OUTPUT_DIR/notebooks``, so the supervisor syncs the notebooks into the job's outputs
while it runs and once more at its end. After ``MODELYARD_CONSOLE_IDLE_TIMEOUT`` seconds with no
activity its kernels are culled (connected ones too) and then the server shuts itself down: the
job ends as succeeded. A restarted console starts from the notebooks of the attempt it resumes.
"""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

from jupyter_server.serverapp import ServerApp
from jupyterlab.labapp import LabApp
from tornado import ioloop

from modelyard.jobs import console

NOTEBOOKS = "notebooks"  # under the output folder


class ConsoleServerApp(ServerApp):
    """jupyter_server checks for no activity once a minute; a console's timeout may be shorter."""

    def init_shutdown_no_activity(self) -> None:
        if self.shutdown_no_activity_timeout > 0:
            every = max(0.5, min(60.0, self.shutdown_no_activity_timeout / 4))
            ioloop.PeriodicCallback(self.shutdown_no_activity, every * 1000).start()


class ConsoleLabApp(LabApp):
    serverapp_class = ConsoleServerApp

    @classmethod
    def get_extension_package(cls) -> str:
        return "jupyterlab"  # the extension it starts is JupyterLab's own, not a module of ours


def server_argv(env: Mapping[str, str]) -> list[str]:
    """JupyterLab's settings from the platform's variables (the token stays in the environment:
    a command line is readable by every user of the machine)."""
    missing = [v for v in (console.PORT_VAR, console.TOKEN_VAR, console.BASE_URL_VAR, "MODELYARD_OUTPUT_DIR")
               if not env.get(v)]
    if missing:
        raise SystemExit(f"modelyard.notebooks.console runs as a console job (`modelyard notebook`); "
                         f"{', '.join(missing)} not set")
    idle = float(env.get(console.IDLE_VAR) or console.DEFAULT_IDLE_TIMEOUT)
    cull_every = max(1, min(60, int(idle / 4)))
    return [
        f"--ServerApp.ip={env.get(console.HOST_VAR) or console.HOST}", f"--ServerApp.port={int(env[console.PORT_VAR])}",
        "--ServerApp.port_retries=0",  # the proxy knows this port only
        f"--ServerApp.base_url={env[console.BASE_URL_VAR]}",
        f"--ServerApp.root_dir={notebook_dir(env)}", "--ServerApp.open_browser=False",
        f"--ServerApp.shutdown_no_activity_timeout={max(1, int(idle))}",
        f"--MappingKernelManager.cull_idle_timeout={max(1, int(idle))}",
        f"--MappingKernelManager.cull_interval={cull_every}",
        "--MappingKernelManager.cull_connected=True",
        "--ServerApp.allow_root=True",  # a job runs as whom the platform chose; root too, on a machine of one
        # nothing of a job's browser page reaches out of the platform: no news feed, no update check
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]


def notebook_dir(env: Mapping[str, str]) -> Path:
    return Path(env["MODELYARD_OUTPUT_DIR"]) / NOTEBOOKS


def prepare(env: Mapping[str, str]) -> None:
    """The notebook folder, with the notebooks of the outputs this attempt resumes from."""
    folder = notebook_dir(env)
    resume = Path(env["MODELYARD_RESUME_DIR"]) / NOTEBOOKS if env.get("MODELYARD_RESUME_DIR") else None
    if resume is not None and resume.is_dir() and not folder.exists():
        shutil.copytree(resume, folder)
    folder.mkdir(parents=True, exist_ok=True)


def main(argv: list[str] | None = None) -> None:
    env = os.environ
    args = server_argv(env)
    prepare(env)
    os.environ["JUPYTER_TOKEN"] = env[console.TOKEN_VAR]  # jupyter_server's IdentityProvider reads it
    ConsoleLabApp.launch_instance([*args, *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    main()
