"""Which commands are notebooks, and what runs one (README "Notebooks as jobs").

A command that is one ``*.ipynb`` path (relative to the job's code: ``["train.ipynb"]``, or
the shell string ``"train.ipynb"`` the web form sends) is a notebook job. The stored spec
keeps what the user wrote; the supervisor, the one place every launch goes through
(``submit``, the web form, the API and ``run --local`` alike), runs ``launch_argv``'s
command instead: the job's own Python running the papermill runner (notebooks/run.py),
by module name in the server's Python, by file in a job's virtualenv or image, which need
papermill and ipykernel but not modelyard.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence

RUNNER_MODULE = "modelyard.notebooks.run"
# one word: a shell string with spaces, quotes, variables or redirections is a shell command
_NOTEBOOK = re.compile(r"[A-Za-z0-9_./+@,=-]+\.ipynb")


def notebook_path(command: list[str] | str) -> str | None:
    """The notebook a job's command runs, or None when it is not a notebook job."""
    if isinstance(command, str):
        word = command.strip()
    elif len(command) == 1:
        word = command[0]
    else:
        return None
    return word if _NOTEBOOK.fullmatch(word) and not word.startswith("-") else None


def output_name(command: list[str] | str) -> str | None:
    """The executed notebook's path among a notebook job's outputs (notebooks/run.py writes it there)."""
    notebook = notebook_path(command)
    return posixpath.basename(notebook) if notebook else None


def launch_argv(argv: list[str], runner: Sequence[str]) -> list[str]:
    """What is executed for ``argv``: a notebook is handed to ``runner``, the runner (notebooks/run.py)
    as the job's own interpreter starts it."""
    notebook = notebook_path(argv)
    return [*runner, notebook] if notebook else list(argv)
