"""``python -m modelyard.server [--host H] [--port P] [--embedded]``: the server without the CLI."""
from __future__ import annotations

import argparse
import sys

from modelyard.errors import ModelyardError
from modelyard.server.app import serve


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m modelyard.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--embedded", action="store_true")
    args = parser.parse_args()
    try:
        serve(host=args.host, port=args.port, embedded=args.embedded)
    except ModelyardError as e:  # bad settings, an unreachable cluster: one line, as the CLI says it
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
