"""``python -m modelyard``: the CLI (also how the client spawns the embedded server)."""
from modelyard.cli.main import app

if __name__ == "__main__":
    app(prog_name="modelyard")
