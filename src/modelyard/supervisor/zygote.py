"""A pre-imported supervisor parent: each launch is a fork, not a fresh interpreter.

A supervisor started as ``python -m modelyard.supervisor`` spends ~0.4 s on
imports (fsspec alone ~0.2 s) before the job can start; forking a process that
has done them already costs a few ms. ``LocalExecutor`` runs one of these per
server as ``python -m modelyard.supervisor --zygote RUNS_DIR`` (RUNS_DIR only
marks whose it is, on its command line; ``python -m modelyard.supervisor.zygote``
is the same), talking over its stdin/stdout, one JSON object a line:

    zygote -> {"ready": true}                                     once, after the imports
    server -> {"config": "/runs/7-1/supervisor.json", "run_dir": "/runs/7-1", "pid_file": "/runs/7-1/supervisor.pid"}
    zygote -> {"pid": 1234, "started": 1712345678.12}            or {"error": "..."}

Each launch double-forks: the middle child leaves the server's session, claims
the attempt (an exclusive ``flock`` on its CONFIG.json, held by the supervisor
for life, so that a fallback launch of the same attempt can never run it
twice), forks the supervisor, writes the reply to ``pid_file`` as well (for a
launcher that lost it) and exits; the supervisor takes a session of its own
and, reparented, outlives both the zygote and the server exactly as one
started with ``start_new_session=True`` does. The zygote exits at EOF on stdin
(the server is gone) and never starts a thread: forking a threaded process
copies locks other threads may hold.
"""
from __future__ import annotations

import fcntl
import gc
import os
import random
import signal
import sys
import threading
import traceback
from typing import Any, NoReturn

import orjson
import psutil

# Everything a supervisor imports, on its first use included, so that a fork
# has nothing left to import. NVML is imported, never initialised here: its
# state must not be shared across forks.
import fsspec.implementations.local  # noqa: F401  (what ArtifactStore("file://...") loads)
import modelyard.supervisor.attempt  # noqa: F401
import modelyard.supervisor.sampler  # noqa: F401
from modelyard.supervisor.main import main


def serve() -> int:
    # Ctrl-C at the server's terminal reaches this process group too: the
    # server's exit closes our stdin, which is how we go.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A collection in a fork would write to every object's header, copying the
    # whole heap page by page: the objects made so far are frozen out of
    # collections, and collection stays off here (the loop makes no cycles).
    gc.disable()
    gc.freeze()
    _reply({"ready": True})
    buf = b""
    while True:
        chunk = os.read(0, 65536)  # not sys.stdin: its buffer would be copied into every fork
        if not chunk:
            return 0
        buf += chunk
        while b"\n" in buf:
            line, _, buf = buf.partition(b"\n")
            if line.strip():
                try:
                    _reply(_launch(line))
                except BrokenPipeError:  # the server went away mid-launch
                    return 0


def _launch(line: bytes) -> dict[str, Any]:
    try:
        request = orjson.loads(line)
        config, run_dir, pid_file = str(request["config"]), str(request["run_dir"]), str(request["pid_file"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as e:
        return {"error": f"bad request: {e!r}"}
    if threading.active_count() != 1:
        return {"error": f"the zygote has {threading.active_count()} threads; refusing to fork"}
    sys.stderr.flush()  # or a fork writes our buffered text into its log as well
    gc.freeze()
    r, w = os.pipe()
    try:
        middle = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        return {"error": f"fork failed: {e}"}
    if middle == 0:
        os.close(r)
        _middle(config, run_dir, pid_file, w)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read()
    os.waitpid(middle, 0)
    try:
        reply = orjson.loads(out)
    except orjson.JSONDecodeError:
        reply = {"error": f"the launching child died without an answer ({out[:200]!r})"}
    return reply if isinstance(reply, dict) else {"error": f"bad answer {reply!r}"}


def _middle(config: str, run_dir: str, pid_file: str, w: int) -> NoReturn:
    """The intermediate child: leave the server's session, claim, fork the supervisor, report, exit."""
    reply: dict[str, Any]
    try:
        os.setsid()
        claim = os.open(config, os.O_RDONLY)
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{config} is claimed by another supervisor") from None
        pid = os.fork()
        if pid == 0:
            os.close(w)
            _supervise(config, run_dir)
        os.close(claim)  # the supervisor's copy keeps the lock
        try:
            # not reaped before we exit, so its start time is readable even if it ended already
            reply = {"pid": pid, "started": psutil.Process(pid).create_time()}
        except BaseException:
            os.kill(pid, signal.SIGKILL)  # an error reply must mean no supervisor runs
            os.waitpid(pid, 0)
            raise
        try:  # for a launcher that lost our reply
            with open(pid_file + ".tmp", "wb") as f:
                f.write(orjson.dumps(reply))
            os.replace(pid_file + ".tmp", pid_file)
        except OSError:
            pass
    except BaseException as e:
        reply = {"error": f"could not fork the supervisor: {e!r}"}
    try:
        os.write(w, orjson.dumps(reply))
    finally:
        os._exit(0)


def _supervise(config: str, run_dir: str) -> NoReturn:
    """The supervisor: what ``python -m modelyard.supervisor CONFIG`` in ``run_dir`` would be."""
    code = 1
    try:
        os.setsid()  # a session of its own, as start_new_session=True gives a Popen'd supervisor
        os.chdir(run_dir)
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open("supervisor.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)  # the supervisor's log: not a job's to read
        os.dup2(null, 0)  # replaces (closes) our end of the zygote's pipes
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        random.seed()  # the stdlib reseeds on fork; explicit for anything seeded from it
        gc.enable()
        code = main([config])
    except SystemExit as e:
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    except BaseException:  # never return into the zygote's loop
        try:
            traceback.print_exc()
        except BaseException:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reply(obj: dict[str, Any]) -> None:
    data = orjson.dumps(obj) + b"\n"
    while data:
        data = data[os.write(1, data):]


if __name__ == "__main__":
    sys.exit(serve())
