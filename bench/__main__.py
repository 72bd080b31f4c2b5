"""``python -m bench [--quick] [--only NAME[,NAME]] [--no-peers] [--repeat N] [--out PATH]``.

Prints the results as JSON and writes them to ``bench/results/latest.json``
(``--out`` elsewhere; ``--quick`` runs write nowhere unless ``--out`` is given).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import psutil

import modelyard
from bench import containers, raycluster
from bench import scenarios as sc
from bench import mlflow_client, venvs
from bench.ours import Server
from bench.peers import PINS, PeerAgent

RESULTS = Path(__file__).parent / "results" / "latest.json"
NAMES = ["submit_to_running", "submit_to_running_venv", "throughput_50_jobs", "ingest_sqlite", "read_1m_downsampled",
         "read_100k_series", "log_to_stream", "ingest_postgresql", "server_start", "scheduling_pass", "schedule_nodes",
         "digits_demo", "memory", "submit_to_first_line_image", "training_image",
         "ray_submit_to_running", "ray_two_node_start", "mlflow_client"]


def machine() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "system": platform.platform(), "load": os.getloadavg()}


class Run:
    def __init__(self, ctx: sc.Context, only: set[str], on_row: Callable[[], None] = lambda: None) -> None:
        self.ctx, self.only = ctx, only
        self.rows: list[dict[str, Any]] = []
        self.on_row = on_row

    def wanted(self, *names: str) -> bool:
        return any(n in self.only for n in names)

    def do(self, name: str, fn: Callable[[], Any]) -> Any:
        if name not in self.only:
            return None
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:  # one scenario's failure is reported in its row; the others still run
            traceback.print_exc()
            self.rows.append({"name": name, "error": f"{type(e).__name__}: {e}"})
            return None
        for r in result if isinstance(result, list) else [result]:
            r["took_s"] = round(time.perf_counter() - t0, 1)
            self.rows.append(r)
            print(f"bench: {r['name']}: {_brief(r)}", file=sys.stderr, flush=True)
        self.on_row()
        return result

    def all(self) -> None:
        ctx = self.ctx
        if self.wanted("submit_to_running", "throughput_50_jobs", "ingest_sqlite", "read_1m_downsampled",
                       "read_100k_series", "log_to_stream"):
            with Server() as server:
                self.do("submit_to_running", lambda: sc.submit_to_running(ctx, server))
                self.do("throughput_50_jobs", lambda: sc.throughput(ctx, server))
                ctx.ray_done()
                db = f"sqlite:///{server.home}/modelyard.db"
                job = [0]

                def ingest() -> dict[str, Any]:
                    r, job[0] = sc.ingestion(ctx, server, db, dialect="sqlite")
                    return r
                if self.wanted("ingest_sqlite", "read_1m_downsampled"):
                    self.do("ingest_sqlite" if "ingest_sqlite" in self.only else "read_1m_downsampled", ingest) \
                        if "ingest_sqlite" in self.only else ingest()
                if job[0]:
                    self.do("read_1m_downsampled", lambda: sc.read_downsampled(ctx, server, job[0]))
                self.do("read_100k_series", lambda: sc.read_series(ctx, server))
                self.do("log_to_stream", lambda: sc.live_stream(ctx, server))
        if self.wanted("submit_to_running_venv"):
            with Server() as server:
                self.do("submit_to_running_venv", lambda: venvs.submit_to_running_venv(ctx, server))
        self.do("mlflow_client", lambda: mlflow_client.mlflow_client(ctx))
        if self.wanted("ingest_postgresql"):
            self.do("ingest_postgresql", self._postgres)
        self.do("server_start", lambda: sc.server_start(ctx))
        self.do("scheduling_pass", lambda: sc.scheduling(ctx))
        self.do("schedule_nodes", lambda: sc.schedule_nodes(ctx))
        self.do("memory", lambda: sc.memory(ctx))
        if self.wanted("submit_to_first_line_image", "training_image"):
            image = containers.prepare()  # before the server starts: it inherits CONTAINERS_CONF
            with Server() as server:
                self.do("submit_to_first_line_image", lambda: containers.submit_to_first_line(ctx, server, image))
                self.do("training_image", lambda: containers.training(ctx, server, image))
        # both on one cluster of two raylets of ours (with a head of its own, or the peers' head) and one
        # server, stopped after them
        if self.wanted("ray_submit_to_running", "ray_two_node_start"):
            with raycluster.ray_rig(ctx) as rig:
                self.do("ray_submit_to_running", lambda: raycluster.ray_submit_to_running(ctx, rig))
                self.do("ray_two_node_start", lambda: raycluster.ray_two_node_start(ctx, rig))
        ctx.ray_done()
        if self.wanted("digits_demo"):  # last: minutes of training, and no peer
            with Server() as server:
                self.do("digits_demo", lambda: sc.demo(ctx, server))

    def _postgres(self) -> dict[str, Any]:
        with sc.fresh_pg_database("bench_modelyard") as ours, sc.fresh_pg_database("bench_mlflow") as theirs:
            self.ctx.pg_mlflow = theirs.replace("postgresql://", "postgresql+psycopg://")  # type: ignore[attr-defined]
            with Server(database_url=ours) as server:
                return sc.ingestion(self.ctx, server, ours, dialect="postgresql")[0]


def _brief(r: dict[str, Any]) -> str:
    m = r.get("modelyard") or {}
    peers = ", ".join(f"{p['name']} {p.get('median', 0):.4g} (x{p.get('ratio')})" for p in r.get("peers", []))
    return f"median {m.get('median', 0):.4g} {r['unit']}" + (f"; {peers}" if peers else "") + f"; met={r['met']}"


def _write(out: Path | None, doc: dict[str, Any]) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    tmp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repetition (the smoke test)")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios: {', '.join(NAMES)}")
    parser.add_argument("--no-peers", action="store_true", help="modelyard only; do not install or run the peers")
    parser.add_argument("--repeat", type=int, default=None, help="repetitions per side (default 3; 1 with --quick)")
    parser.add_argument("--out", type=Path, default=None, help=f"where to write the JSON (default {RESULTS})")
    args = parser.parse_args(argv)
    only = {n.strip() for n in args.only.split(",") if n.strip()} or set(NAMES)
    unknown = only - set(NAMES)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    sizes = sc.QUICK if args.quick else sc.FULL
    if args.repeat:
        sizes = dataclasses.replace(sizes, repeat=args.repeat)
    peers = None if args.no_peers else PeerAgent()
    started = time.time()
    before = machine()
    out = args.out or (None if args.quick or args.only else RESULTS)

    def document(*, partial: bool) -> dict[str, Any]:
        return {
            "machine": before, "load_after": os.getloadavg(), "started": started,
            "duration_s": round(time.time() - started, 1), "partial": partial,
            "versions": {"modelyard": modelyard.__version__, "peers": None if args.no_peers else PINS},
            "options": {"quick": args.quick, "peers": not args.no_peers, "repeat": sizes.repeat,
                        "only": sorted(only)},
            "sizes": dataclasses.asdict(sizes), "scenarios": run.rows,
        }

    # after every scenario, so a long run cut short still leaves what it measured
    run = Run(sc.Context(sizes, peers), only, on_row=lambda: _write(out, document(partial=True)))
    try:
        run.all()
    finally:
        run.ctx.ray_done() if peers else None
        if peers is not None:
            peers.close()
    doc = document(partial=False)
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    _write(out, doc)
    return 1 if any("error" in r for r in run.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
