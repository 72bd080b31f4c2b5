"""``modelyard nodes``: the platform's nodes, their labels, and what is used on each."""
from __future__ import annotations

from modelyard.cli.connect import get_client
from modelyard.cli.jobs import Json
from modelyard.cli.output import console, nodes_table, print_json


def nodes(as_json: Json = False) -> None:
    """List the nodes jobs are placed on: id, address, labels, GPUs, CPUs and memory used/total, running jobs.

    The local executor has one node (labels from MODELYARD_NODE_LABELS); on a Ray
    cluster, every node that is up now (a node's custom resources are its labels).

    Example: modelyard nodes
    """
    with get_client() as client:
        capacity = client.capacity()
    if as_json:
        return print_json(capacity["nodes"])
    console.print(nodes_table(capacity["nodes"]))
