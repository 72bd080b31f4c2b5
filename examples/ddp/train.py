"""Data-parallel training with torch.distributed, as modelyard runs it under torchrun.

    modelyard submit --nodes 1 --nproc-per-node 2 -- 'torchrun --nnodes $NNODES --node-rank $NODE_RANK \
        --nproc-per-node $LOCAL_WORLD_SIZE --master-addr $MASTER_ADDR --master-port $MASTER_PORT train.py'

(one quoted argument is a shell string, so the variables are the job's own). A tiny linear model,
gloo on CPU (NCCL when every process has a GPU), a few dozen steps: each process trains on
its own shard and DDP averages the gradients, so every process ends with the same weights.
Each process writes ``weights-rank{RANK}.json`` (the SHA-256 of its final weights) into its
node's ``$MODELYARD_OUTPUT_DIR`` and prints it; rank 0 also writes ``weights-all.json`` (every
rank's hash, gathered) and ``checkpoint.pt``. Only rank 0's node's outputs are kept, so on
several nodes ``weights-all.json`` is where every rank's hash arrives.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel



def say(line: str) -> None:
    """One line in one write: the ranks share one stdout, and under PYTHONUNBUFFERED (which the platform
    sets) print() writes the text and its newline apart, so two ranks' lines could run together."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

def weights_hash(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=0.05)
    args = ap.parse_args()
    use_cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if use_cuda else "gloo")  # env://: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE
    rank, world = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    torch.manual_seed(0)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
    model = DistributedDataParallel(torch.nn.Linear(4, 1).to(device), device_ids=[local_rank] if use_cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    data = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard
    true_w = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    for step in range(1, args.steps + 1):
        x = torch.randn(32, 4, generator=data)
        y = x @ true_w.T + 0.1
        loss = torch.nn.functional.mse_loss(model(x.to(device)), y.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rank == 0:
            say(json.dumps({"metric": "loss", "value": loss.item(), "step": step}))
    digest = weights_hash(model.module)
    say(f"rank {rank} of {world} (node rank {os.environ.get('NODE_RANK')}): weights sha256 {digest}")
    out = Path(os.environ.get("MODELYARD_OUTPUT_DIR", "."))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"weights-rank{rank}.json").write_text(json.dumps({"rank": rank, "sha256": digest}))
    every: list[str | None] = [None] * world
    dist.all_gather_object(every, digest)
    if rank == 0:
        (out / "weights-all.json").write_text(json.dumps({"world_size": world, "sha256": every}))
        torch.save(model.module.state_dict(), out / "checkpoint.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
