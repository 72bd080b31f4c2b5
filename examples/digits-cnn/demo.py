"""`make demo`: train the digits convnet as a modelyard job, end to end, through the CLI.

Registers scikit-learn's bundled digits as a dataset split 80/20 (`modelyard
dataset create`), submits this folder with that dataset (`modelyard submit
--dataset digits --follow`), streams the job's log, prints its metrics, then
says where the outputs and the web UI are. With no MODELYARD_URL set, the CLI
starts the embedded local server on first use.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

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

    with tempfile.TemporaryDirectory() as tmp:
        source = export_digits(Path(tmp))
        print("registering scikit-learn's digits as dataset 'digits' (80/20 split, npz)", flush=True)
        made = modelyard("dataset", "create", "digits", str(source), "--split", "train=0.8,val=0.2",
                         "--seed", "0", "--format", "npz", "--description", "scikit-learn's 8x8 digits")
        if made.returncode != 0:
            return made.returncode

    print(f"submitting examples/digits-cnn ({args.epochs} epochs); the job's log follows", flush=True)
    # --json puts the final job on stdout and the live log on stderr, which we let through.
    done = modelyard("submit", "--name", "digits-cnn", "--workdir", str(HERE.relative_to(REPO)),
                     "--dataset", "digits", "--json", "--follow",
                     "--", "python", "train.py", "--epochs", str(args.epochs), capture=True)
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


def export_digits(folder: Path) -> Path:
    """scikit-learn's bundled digits (no download) as one .npz of images ``x`` and labels ``y``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    path = folder / "digits.npz"
    np.savez(path, x=digits.images.astype(np.float32), y=digits.target.astype(np.int64))
    return path


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
