"""modelyard's benchmark suite, side by side with MLflow and Ray Jobs (issue 3).

``python -m bench`` (or ``make bench``) runs every scenario for modelyard and
for its peer alternately, prints JSON and writes ``bench/results/latest.json``.

Modules:
    __main__   options, the run, the JSON document
    harness    timing, alternation, summaries (median/min/max, ratio)
    ours       a real modelyard server in a subprocess, and trivial jobs
    peers      the peers' own virtualenv (pinned MLflow and Ray) and an agent in it
    peer_agent runs inside that virtualenv: Ray head, MLflow server, their clients
    scenarios  one function per row of the issue's table
"""
