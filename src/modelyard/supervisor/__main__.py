"""``python -m modelyard.supervisor CONFIG.json`` (docs/protocol.md, "Supervisor launch")."""
from __future__ import annotations

import sys

from modelyard.supervisor.main import main

if __name__ == "__main__":
    sys.exit(main())
