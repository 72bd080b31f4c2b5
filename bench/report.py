"""``python -m bench.report [results.json]``: the README's Performance table from a results file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from bench.__main__ import RESULTS


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit in ("points/s", "jobs/s"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.2f} {unit}"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.3f}"


def line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r['name']} | error: {r['error']} | | | |"
    m = r["modelyard"] or {}
    ours = fmt(m.get("median"), r["unit"])
    if m.get("n", 0) > 1:
        ours += f" ({fmt(m['min'], r['unit'])}–{fmt(m['max'], r['unit'])})"
    if r["name"] in ("submit_to_running", "ray_two_node_start") and m:
        ours = f"p50 {fmt(m['median'], 's')}, p90 {fmt(m['p90'], 's')}"
    if r.get("split"):
        parts = {"placed": "placed", "actors_up": "both actors up", "supervisors": "then both supervisors' reports"}
        ours += "; " + ", ".join(f"{label} {fmt(r['split'][k]['median'], 's')}" for k, label in parts.items()
                                 if r["split"].get(k))
    if r.get("cold_s") is not None:
        ours += f"; first (cold) read {fmt(r['cold_s'], 's')}"
    if r.get("uss_mb"):
        ours += f"; its own (USS) {fmt(r['uss_mb']['median'], 'MB')}"
    if r.get("points_layout"):
        ours += f"; as point objects {fmt(r['points_layout']['median'], 's')}"
    took = r.get("log_s") or {}  # the MLflow client rows: how long the points took, beside the rate
    if took.get("modelyard"):
        ours += f"; logged in {fmt(took['modelyard']['median'], 's')}"
    peers = "; ".join(f"{p['name']}: {fmt(p.get('median'), r['unit'])}"
                      + (f" (logged in {fmt(took[p['name']]['median'], 's')})" if took.get(p["name"]) else "")
                      + (f" → **{p['ratio']}x**" if p.get("ratio") is not None else "") for p in r["peers"]) or "—"
    if (r.get("peer_split") or {}).get("driver_up"):
        peers += f"; its driver up {fmt(r['peer_split']['driver_up']['median'], 's')}"
    met = {True: "met", False: "**missed**", None: "—"}[r["met"]]
    return f"| {r['name']} | {ours} | {peers} | {r['target']} | {met} |"


def main() -> None:
    doc = orjson.loads(Path(sys.argv[1] if len(sys.argv) > 1 else RESULTS).read_bytes())
    m = doc["machine"]
    print(f"Machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GB, Python {m['python']}; "
          f"load average {m['load'][0]:.1f} at the start, {doc['load_after'][0]:.1f} at the end; "
          f"{doc['options']['repeat']} repetition(s) per side; {doc['duration_s'] / 60:.0f} min.\n")
    if doc.get("note"):
        print(doc["note"] + "\n")
    print("| scenario | modelyard median (min–max) | peer, same run (ratio) | target | |")
    print("| --- | --- | --- | --- | --- |")
    for r in doc["scenarios"]:
        print(line(r))


if __name__ == "__main__":
    main()
