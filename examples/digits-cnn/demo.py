"""`make demo`: train the digits convnet as a modelyard job, end to end, through the CLI.

Submits this folder (`modelyard submit --follow`), streams the job's log, prints
its metrics, then says where the outputs and the web UI are. With no
MODELYARD_URL set, the CLI starts the embedded local server on first use.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()

    # `python` in the job must be this interpreter (the venv's): the embedded server,
    # and so the job, inherit the CLI's PATH.
    venv_bin = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    cli = shutil.which("modelyard", path=env["PATH"])
    base = [cli] if cli else [sys.executable, "-m", "modelyard"]

    def modelyard(*argv: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *argv], env=env, cwd=REPO, text=True,
                              stdout=subprocess.PIPE if capture else None)

    print(f"submitting examples/digits-cnn ({args.epochs} epochs); the job's log follows", flush=True)
    # --json puts the final job on stdout and the live log on stderr, which we let through.
    done = modelyard("submit", "--name", "digits-cnn", "--workdir", str(HERE.relative_to(REPO)),
                     "--json", "--follow", "--", "python", "train.py", "--epochs", str(args.epochs),
                     capture=True)
    try:
        job = json.loads(done.stdout)
    except json.JSONDecodeError:
        print(f"modelyard submit failed (exit {done.returncode})", file=sys.stderr)
        return done.returncode or 1
    job_id = str(job["id"])
    print(f"\njob {job_id} ended: {job['state']}", flush=True)
    modelyard("metrics", job_id)

    print(f"\noutputs (checkpoints, latest.pt, model.pt): modelyard download {job_id} --to ./digits-cnn-outputs")
    print(f"resume for more epochs:  modelyard clone {job_id} --resume -- python train.py --epochs {args.epochs + 5}")
    if url := server_url():
        print(f"web UI: {url}")
    return 0 if job["state"] == "succeeded" else 1


def server_url() -> str | None:
    if url := os.environ.get("MODELYARD_URL"):
        return url
    home = Path(os.environ.get("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser()
    try:
        return json.loads((home / "server.json").read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None


if __name__ == "__main__":
    sys.exit(main())
