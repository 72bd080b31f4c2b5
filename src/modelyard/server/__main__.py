"""``python -m modelyard.server [--host H] [--port P] [--embedded]``: the server without the CLI."""
from __future__ import annotations

import argparse

from modelyard.server.app import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m modelyard.server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--embedded", action="store_true")
    args = parser.parse_args()
    serve(host=args.host, port=args.port, embedded=args.embedded)


if __name__ == "__main__":
    main()
