"""The house rules of DESIGN.md that an import can break: pages and routes call services, never each
other's handlers; nothing below the API imports the server; the domain imports nothing of ours but itself."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "modelyard"


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _modules(folder: str) -> list[Path]:
    return sorted((SRC / folder).rglob("*.py"))


def test_pages_and_services_never_call_route_handlers() -> None:
    offenders = {str(p.relative_to(SRC)): sorted(m for m in _imports(p) if m.startswith("modelyard.server.routes_"))
                 for p in _modules("server/web") + _modules("services")}
    assert not {k: v for k, v in offenders.items() if v}


def test_routes_do_not_import_each_other() -> None:
    offenders = {}
    for p in sorted((SRC / "server").glob("routes_*.py")):
        found = sorted(m for m in _imports(p) if m.startswith("modelyard.server.routes_"))
        if found:
            offenders[p.name] = found
    assert not offenders


def test_nothing_below_the_api_imports_the_server() -> None:
    below = ["db", "artifacts", "scheduler", "executors", "supervisor", "jobs", "datasets"]
    offenders = {str(p.relative_to(SRC)): sorted(m for m in _imports(p) if m.startswith("modelyard.server"))
                 for folder in below for p in _modules(folder)}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_domain_imports_nothing_of_ours_but_itself() -> None:
    offenders = {str(p.relative_to(SRC)): sorted(m for m in _imports(p) if m.startswith("modelyard.")
                                                 and not m.startswith(("modelyard.jobs", "modelyard.errors")))
                 for p in _modules("jobs")}
    assert not {k: v for k, v in offenders.items() if v}


def test_artifact_keys_are_written_in_one_place() -> None:
    """Every ``jobs/…``, ``snapshots/…`` or ``datasets/…`` key is built in artifacts/keys.py."""
    offenders = []
    for p in sorted(SRC.rglob("*.py")):
        if p == SRC / "artifacts" / "keys.py":
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
                head = str(node.values[0].value)
                if head.startswith(("jobs/", "snapshots/", "datasets/")):
                    offenders.append(f"{p.relative_to(SRC)}:{node.lineno}")
    assert not offenders
