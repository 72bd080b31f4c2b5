"""Train a small convnet on scikit-learn's bundled 8x8 digits (no download).

A modelyard example job, and a plain script: it depends on PyTorch and
scikit-learn only, never on modelyard. It follows the platform's contract:

- metrics are stdout lines like ``{"metric": "loss", "value": 0.31, "step": 40}``;
- checkpoints go to ``$MODELYARD_OUTPUT_DIR`` (default ``./outputs``), one per
  epoch plus ``latest.pt``, each written whole before it appears;
- with ``$MODELYARD_RESUME_DIR/latest.pt`` present it resumes: model, optimizer,
  LR schedule and epoch count carry on from there;
- ``$MODELYARD_DATA_DIR`` with ``train/train.npz`` and ``val/val.npz`` (``modelyard dataset create ... --format npz``;
  plain ``train.npz`` and ``val.npz`` also do), arrays ``x``, ``y``
  replaces the bundled data set;
- it uses a GPU when ``CUDA_VISIBLE_DEVICES`` gives one, else the CPU.

``--epochs`` is the total to reach: a resumed run trains the epochs after the
last one saved, up to that total.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

SEED = 0
LOSS_EVERY = 5  # steps between loss points: enough for a smooth curve, few lines


def log_metric(name: str, value: float, step: int | None = None, epoch: int | None = None) -> None:
    point: dict[str, object] = {"metric": name, "value": float(value)}
    if step is not None:
        point["step"] = step
    if epoch is not None:
        point["epoch"] = epoch
    print(json.dumps(point), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=15, help="total epochs to reach (default 15)")
    p.add_argument("--lr", type=float, default=2e-3, help="initial learning rate (default 2e-3)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    return p.parse_args(argv)


def load_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_val, y_val); x as float32 in [0, 1], shape (n, 1, 8, 8)."""
    data_dir = os.environ.get("MODELYARD_DATA_DIR")
    train, val = (_split_file(Path(data_dir), s) for s in ("train", "val")) if data_dir else (None, None)
    if train and val:
        with np.load(train) as tr, np.load(val) as va:
            x_tr, y_tr, x_va, y_va = tr["x"], tr["y"], va["x"], va["y"]
    else:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        x_tr, x_va, y_tr, y_va = train_test_split(
            digits.images, digits.target, test_size=0.2, stratify=digits.target, random_state=SEED
        )
    return _as_images(x_tr), y_tr.astype(np.int64), _as_images(x_va), y_va.astype(np.int64)


def _split_file(root: Path, split: str) -> Path | None:
    """``<split>/<split>.npz`` (a dataset made with ``--format npz``), or ``<split>.npz``."""
    return next((p for p in (root / split / f"{split}.npz", root / f"{split}.npz") if p.is_file()), None)


def _as_images(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(len(x), 1, 8, 8)
    top = float(x.max()) or 1.0
    return x / top


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def pick_device() -> torch.device:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    # The platform sets "" for a CPU-only job; unset means we run outside it.
    gpu_given = visible is None or visible.strip() not in ("", "-1")
    return torch.device("cuda") if gpu_given and torch.cuda.is_available() else torch.device("cpu")


def save_atomically(obj: object, path: Path) -> None:
    """A sync that copies the folder mid-write must never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(SEED)
    if "OMP_NUM_THREADS" not in os.environ:
        # The job may be pinned to fewer cores than the machine has; more threads only contend.
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    device = pick_device()
    out_dir = Path(os.environ.get("MODELYARD_OUTPUT_DIR") or "outputs")
    out_dir.mkdir(parents=True, exist_ok=True)

    x_tr, y_tr, x_va, y_va = (torch.from_numpy(a).to(device) for a in load_data())
    model = build_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.85)
    start_epoch, step = 1, 0

    resume_dir = os.environ.get("MODELYARD_RESUME_DIR")
    latest = Path(resume_dir) / "latest.pt" if resume_dir else None
    if latest is not None and latest.is_file():
        state = torch.load(latest, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"] + 1, state["step"]
        print(f"resumed from {latest} (epoch {state['epoch']}, step {step})", flush=True)
    print(f"training on {device}: {len(x_tr)} train / {len(x_va)} val images, "
          f"epochs {start_epoch}..{args.epochs}", flush=True)

    started = time.monotonic()
    val_acc = None
    for epoch in range(start_epoch, args.epochs + 1):
        model.train()
        # Shuffle from (seed, epoch) so a resumed run sees the batches an unbroken one would.
        order = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(SEED * 1000 + epoch))
        correct, seen = 0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size].to(device)
            logits = model(x_tr[idx])
            loss = nn.functional.cross_entropy(logits, y_tr[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            correct += (logits.argmax(1) == y_tr[idx]).sum().item()
            seen += len(idx)
            if step % LOSS_EVERY == 0:
                log_metric("loss", loss.item(), step=step)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val_loss, val_acc = evaluate(model, x_va, y_va)
        log_metric("accuracy", correct / seen, step=step, epoch=epoch)
        log_metric("val_loss", val_loss, step=step, epoch=epoch)
        log_metric("val_accuracy", val_acc, step=step, epoch=epoch)
        log_metric("learning_rate", lr, step=step, epoch=epoch)
        state = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step,
            "args": vars(args),
        }
        save_atomically(state, out_dir / f"checkpoint-epoch{epoch:03d}.pt")
        save_atomically(state, out_dir / "latest.pt")
        print(f"epoch {epoch}/{args.epochs}: val_accuracy {val_acc:.4f} "
              f"({time.monotonic() - started:.1f}s)", flush=True)

    if val_acc is None:
        print(f"nothing to do: already at epoch {start_epoch - 1} of {args.epochs}", flush=True)
    else:
        save_atomically(model.state_dict(), out_dir / "model.pt")
        print(f"done: final val_accuracy {val_acc:.4f}, outputs in {out_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
