"""How the CLI fails: one line on stderr, ``error: <field>: <message>``, and an exit code.

The root command group catches everything at the boundary: a domain or client
error exits 1, a usage error 2, Ctrl-C 130; an unexpected exception is also one
line (its traceback only with ``MODELYARD_DEBUG=1``).
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

from modelyard.errors import ModelyardError

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print ``error: message`` and return the Exit to raise."""
    print(f"error: {message}", file=sys.stderr)
    return typer.Exit(code)


class ModelyardGroup(TyperGroup):
    """The root group; forces non-standalone mode so that errors are ours to print."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        code = _run(lambda: super(ModelyardGroup, self).main(args, prog_name, complete_var, standalone_mode=False, **extra))
        if standalone_mode:
            sys.exit(code)
        return code


def _run(main: Any) -> int:
    try:
        rv = main()
    except ModelyardError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # click's usage errors (exit 2) and file errors (exit 1)
        return _usage_error(e)
    except (typer.Abort, KeyboardInterrupt):
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as e:  # the CLI's outer boundary: a bug, still shown as one line
        if os.environ.get("MODELYARD_DEBUG"):
            traceback.print_exc()
        print(f"error: unexpected {type(e).__name__}: {e} (MODELYARD_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_ERROR
    return rv if isinstance(rv, int) else 0


def _usage_error(e: typer.TyperException) -> int:
    ctx = getattr(e, "ctx", None)
    if type(e).__name__ == "NoArgsIsHelpError":
        # Its message is the help text; Rich has already printed it when it is empty.
        if e.format_message().strip():
            print(e.format_message())
        return 0
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    print(f"error: {e.format_message()}{hint}", file=sys.stderr)
    return int(getattr(e, "exit_code", EXIT_USAGE))
