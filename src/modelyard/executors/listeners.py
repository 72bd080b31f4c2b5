"""Who listens on a TCP port of this machine: what a console's proxy checks before it sends a browser,
and the console token, there (services/consoles.py on the server's machine, ray_actor.py on a node)."""
from __future__ import annotations

from pathlib import Path

PROC_TCP = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
LISTEN = "0A"  # a socket's state in /proc/net/tcp


def listener_uids(port: int, tables: tuple[Path, ...] = PROC_TCP) -> set[int] | None:
    """The uids of every socket listening on ``port`` (any address: a wildcard one takes 127.0.0.1's
    connections too), from Linux's /proc/net/tcp{,6}; None where there is no such table."""
    found: set[int] = set()
    seen_table = False
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        seen_table = True
        for line in lines:
            fields = line.split()
            if len(fields) > 7 and fields[3] == LISTEN and fields[1].rpartition(":")[2] == f"{port:04X}":
                found.add(int(fields[7]))
    return found if seen_table else None
