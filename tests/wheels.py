"""Tiny wheels made on the spot, and requirements that install them with no index: no network in tests."""
from __future__ import annotations

import zipfile
from pathlib import Path


def make_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0", body: str = "VALUE = 42\n") -> Path:
    """A pure-Python wheel of one module ``name`` (``name.VALUE``), written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: modelyard-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{k},,\n" for k in files) + f"{dist}/RECORD,,\n"
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for k, v in files.items():
            z.writestr(k, v)
    return path


def local_requirements(folder: Path, *pins: str) -> str:
    """A requirements file's text that resolves ``pins`` from ``folder`` only (uv reads these options)."""
    return "\n".join(["--no-index", f"--find-links {folder}", *pins]) + "\n"
