"""A notebook job's command: ``python -m modelyard.notebooks.run NOTEBOOK`` (jobs/notebook.py decides when).

Runs the notebook top to bottom with papermill in the job's own Python: the job's
parameters (``MODELYARD_PARAMS``) go into the cell tagged ``parameters``, each cell's
stream output is written to this process's stdout and stderr as it arrives (so the
supervisor reads metric lines from cells as from any job), and the executed notebook is
saved after every cell as ``$MODELYARD_OUTPUT_DIR/<name>.ipynb``, so a failed or stopped
run keeps what ran. A cell that raises ends the run with exit code 1 and, last on stderr,
``cell N raised:`` and its traceback: the last lines the job's message quotes.

Only papermill (with the nbformat and jupyter_client it brings) and the standard library are
imported here: this runs in the job's environment, which need not have modelyard (jobs/notebook.py).
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

EXIT_CELL_RAISED = 1
EXIT_USAGE = 2
# the failure message quotes the supervisor's last 20 lines: the headline and the traceback's end fit in them
TRACEBACK_LINES = 16
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# IPython's first line, "ValueError    Traceback (most recent call last)": the last line names the error again
_HEADER = re.compile(r"\S+\s+Traceback \(most recent call last\)\s*")
INJECTED_TAG = "injected-parameters"  # papermill's tag on the cell it adds


def output_path(notebook: Path, env: dict[str, str] | os._Environ[str]) -> Path:
    """Where the executed notebook goes: the job's output folder (the working folder without one)."""
    return Path(env.get("MODELYARD_OUTPUT_DIR") or ".") / notebook.name


def job_params(env: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    raw = env.get("MODELYARD_PARAMS") or "{}"
    try:
        params = json.loads(raw)
    except ValueError:
        raise SystemExit(f"MODELYARD_PARAMS is not JSON: {raw[:200]!r}") from None
    if not isinstance(params, dict):
        raise SystemExit("MODELYARD_PARAMS is not a JSON object")
    return params


def cell_failure(exc: Any, cells: list[Any]) -> str:
    """``cell N raised:`` and the traceback, ANSI colours stripped, its last lines only.
    N counts the notebook's own cells from 1, not the one papermill injected."""
    index = exc.cell_index
    injected = sum(1 for c in cells[:index] if INJECTED_TAG in c.get("metadata", {}).get("tags", []))
    lines = [ln for ln in _ANSI.sub("", "\n".join(exc.traceback)).splitlines()
             if ln.strip() and set(ln) != {"-"} and not _HEADER.fullmatch(ln)]
    if not lines:
        lines = [f"{exc.ename}: {exc.evalue}"]
    if len(lines) > TRACEBACK_LINES:
        lines = ["...", *lines[-TRACEBACK_LINES:]]
    return f"cell {index - injected + 1} raised:\n" + "\n".join(lines)


def run(notebook: Path) -> int:
    try:
        import nbformat
        import papermill
        from jupyter_client.kernelspec import NoSuchKernel
        from jupyter_client.manager import KernelManager
        from papermill.exceptions import PapermillExecutionError
    except ImportError as e:
        print(f"cannot run the notebook: {e.name or e} is not installed in the job's environment (a notebook "
              "job needs papermill and ipykernel: add them to its requirements or image)", file=sys.stderr)
        return EXIT_USAGE

    class LocalKernel(KernelManager):
        """A kernel on Unix sockets in a folder only this job's uid may enter, not on TCP ports
        any process of the machine could connect to."""

        def _transport_default(self) -> str:
            return "ipc"

    try:
        kernel = kernel_name(nbformat.read(str(notebook), as_version=4))
    except Exception as e:  # nbformat's reader raises what its JSON parser and validator raise
        print(f"{notebook} is not a notebook nbformat can read: {type(e).__name__}: {str(e)[:500]}", file=sys.stderr)
        return EXIT_USAGE
    out = output_path(notebook, os.environ)
    out.parent.mkdir(parents=True, exist_ok=True)
    # a short path: a socket's path is bounded (108 bytes), and a job's HOME may be deep in its run folder
    with tempfile.TemporaryDirectory(prefix="modelyard-kernel-") as runtime:
        os.environ["JUPYTER_RUNTIME_DIR"] = runtime
        signal.signal(signal.SIGTERM, functools.partial(_stopped, runtime))
        try:
            papermill.execute_notebook(
                str(notebook), str(out), parameters=job_params(os.environ), progress_bar=False,
                # the raw stream text, unchanged: a metric line written by a cell stays one line on stdout
                stdout_file=sys.stdout, stderr_file=sys.stderr, kernel_manager_class=LocalKernel,
                kernel_name=kernel, cwd=str(notebook.parent.resolve()),  # Jupyter runs a notebook in its folder
            )
        except PapermillExecutionError as e:
            sys.stdout.flush()
            print(cell_failure(e, nbformat.read(str(out), as_version=4).cells), file=sys.stderr, flush=True)
            return EXIT_CELL_RAISED
        except NoSuchKernel as e:
            print(f"the notebook's kernel {e.name!r} is not installed in the job's environment", file=sys.stderr)
            return EXIT_USAGE
    return 0


def _stopped(runtime: str, signum: int, _frame: object) -> None:
    """Stopped (SIGTERM to the job's group, the kernel's too): the kernel's folder goes, then this
    process as the signal would have ended it. The notebook keeps the cells that finished."""
    shutil.rmtree(runtime, ignore_errors=True)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def kernel_name(nb: Any) -> str | None:
    """A Python notebook runs in this interpreter's own kernel (ipykernel's ``python3``), whatever kernel
    it was saved with on someone's laptop (``conda-env-x``, ``.venv``); None: the notebook's own."""
    spec = nb.metadata.get("kernelspec") or {}
    language = spec.get("language") or (nb.metadata.get("language_info") or {}).get("name") or "python"
    return "python3" if language == "python" else None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].endswith(".ipynb"):
        print("usage: python -m modelyard.notebooks.run NOTEBOOK.ipynb", file=sys.stderr)
        return EXIT_USAGE
    notebook = Path(args[0])
    if not notebook.is_file():
        print(f"notebook {notebook} not found (the command names it relative to the job's code)", file=sys.stderr)
        return EXIT_USAGE
    return run(notebook)


if __name__ == "__main__":
    sys.exit(main())
