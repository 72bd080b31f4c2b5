"""The MLflow client rows: one client logging to modelyard, to ``mlflow server`` and to FastTrackML.

The client is the peers' MLflow (``peer_agent``'s ``client_*`` ops), the same process for all three
servers, each server fresh on SQLite on this machine and up for the whole scenario; the sides run
alternately (ours, mlflow, FastTrackML, ours, ...). With ``--no-peers`` only ours is measured, by an
agent under the bench's own interpreter (its mlflow-skinny is the same version as the peers' pin).
"""
from __future__ import annotations

import sys
from typing import Any

from bench.harness import Side, alternate, summary
from bench.ours import Server
from bench.peers import PeerAgent
from bench.scenarios import Context, row

NAMES = 10  # series stepped together, as a loop logs loss, accuracy, lr, ...


def _ahead(peers: list[dict[str, Any]]) -> bool:
    return all(p["ratio"] >= 1 for p in peers)


class _Target:
    """One server as the client sees it, with the sides it is measured on."""

    def __init__(self, label: str, url: str, token: str | None, calls: int, note: str | None = None) -> None:
        self.label, self.url, self.token, self.calls = label, url, token, calls
        self.batch = Side(label, lambda: 0.0, note=note)
        self.read = Side(label, lambda: 0.0, note=note)
        self.per_call = Side(label, lambda: 0.0, note=note)
        # seconds per sample: the whole log, and the parts inside HTTP exchanges (the server's share)
        self.log_s: list[float] = []
        self.http: dict[str, list[float]] = {"log_batch": [], "log_metric": [], "read": []}


def mlflow_client(ctx: Context) -> list[dict[str, Any]]:
    sz = ctx.sizes
    n, calls = sz.mlflow_client_points, sz.mlflow_client_calls
    agent = ctx.peers or PeerAgent(python=sys.executable)
    agent.send("client_reset")
    agent.send("client_version")  # the client's imports, while our server starts
    try:
        with Server() as server:
            agent.reply("client_reset")
            version = str(agent.reply("client_version")["mlflow"])
            targets = [_Target("modelyard", server.url, (server.home / "token").read_text().strip(), calls)]
            if ctx.peers:
                # at ~20 calls/s mlflow server gets fewer log_metric calls; its rate is compared
                slow = min(calls, sz.mlflow_metric_points)
                targets.append(_Target("mlflow server", agent.call("mlflow_start")["url"], None, slow,
                                       note=f"mlflow server {version}, SQLite; log_metric: {slow:,} calls"))
                targets.append(_Target("fasttrackml", agent.call("fml_start")["url"], None, calls,
                                       note="fml server 0.6.0, SQLite"))
            for t in targets:  # warm-up: each server's first requests pay its lazy imports and caches
                _log_and_read(agent, t, min(n, 1000), per_call=False)
                _log_and_read(agent, t, min(calls, 20), per_call=True)
            sides = []
            for t in targets:
                def batch(t: _Target = t) -> float:
                    logged, back = _log_and_read(agent, t, n, per_call=False)
                    t.log_s.append(logged["value"])
                    t.http["log_batch"].append(logged["http"])
                    t.read.samples.append(back["value"])
                    t.http["read"].append(back["http"])
                    return n / logged["value"]

                def per_call(t: _Target = t) -> float:
                    logged, _ = _log_and_read(agent, t, t.calls, per_call=True)
                    t.http["log_metric"].append(logged["http"] / t.calls)
                    return t.calls / logged["value"]
                t.batch.measure, t.per_call.measure = batch, per_call
                sides += [t.batch, t.per_call]
            alternate(sides, sz.repeat)
    finally:
        if ctx.peers:
            agent.call("fml_stop")
            agent.call("mlflow_stop")
        else:
            agent.close()
    ours, peers = targets[0], targets[1:]
    how = (f"MlflowClient (mlflow {version}) outside any job, a fresh run per repetition on each server: "
           f"{NAMES} series stepped together")
    batch = row("mlflow_client_log_batch", "points/s", "ahead of mlflow server and FastTrackML", ours.batch,
                [p.batch for p in peers], higher_is_better=True, met=lambda s, p: _ahead(p),
                notes=f"{how}, {n:,} points in log_batch calls of 1,000 (MLflow's most per call, as autolog and "
                      "async logging send them); first call -> last answer")
    batch["log_s"] = {t.label: summary(t.log_s) for t in targets}
    per = row("mlflow_client_log_metric", "points/s", "ahead of mlflow server and FastTrackML", ours.per_call,
              [p.per_call for p in peers], higher_is_better=True, met=lambda s, p: _ahead(p),
              notes=f"{how}, {calls:,} points one log_metric call each (fewer to mlflow server, as its note "
                    "says: the rate is compared); read back and checked, untimed")
    read = row("mlflow_client_read", "s", "ahead of mlflow server and FastTrackML", ours.read,
               [p.read for p in peers], higher_is_better=False, met=lambda s, p: _ahead(p),
               notes=f"{how}: the {n:,} points just logged read back with get_metric_history, one call per "
                     "series (each following the server's pages), then every point checked (step, value, "
                     "timestamp)")
    for r, key, what in ((batch, "log_batch", f"the {n:,} points"), (per, "log_metric", "a call"),
                         (read, "read", f"the {n:,} points")):
        r["http_s"] = {t.label: summary(t.http[key]) for t in targets}
        r["notes"] += (f"; http_s: seconds of {what} inside the client's HTTP exchanges (the server's share "
                       "and the wire; the rest is the client's own work, alike for every server)")
    return [batch, per, read]


def _log_and_read(agent: PeerAgent, t: _Target, n: int, *, per_call: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    logged = agent.call("client_log", url=t.url, token=t.token, n=n, names=NAMES, per_call=per_call)
    read = agent.call("client_read", url=t.url, token=t.token, run_id=logged["run_id"], n=n, names=NAMES)
    return logged, read
