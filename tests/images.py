"""Test helper: container images built here, from Debian's packages, with no registry.

``python_image()`` returns the reference of a small Debian root filesystem with
python3 (``debootstrap --variant=minbase``, from this machine's apt mirror),
imported into Podman with ``podman import``. The tag is a hash of the recipe:
an image of that tag in Podman's store is reused as is, and the root
filesystem's tarball is kept in ``$MODELYARD_TEST_IMAGE_CACHE``
(/var/cache/modelyard-test-images) so a fresh clone on the same machine imports
it in seconds instead of building it again (a cold build takes about 80 s).

``use_test_containers_conf()`` points Podman at tests/containers.conf (runc,
cgroupfs, no ulimits) through CONTAINERS_CONF, which servers and their
supervisors inherit. With no podman these helpers fail; they never skip.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CONTAINERS_CONF = TESTS / "containers.conf"
SUITE = "bookworm"
PACKAGES = ("python3",)
# Bump when the recipe changes in a way the fields above do not show.
RECIPE_VERSION = 1
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/cache/apt/archives", "var/lib/apt/lists")


def use_test_containers_conf() -> None:
    os.environ.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))


def podman() -> str:
    path = shutil.which("podman")
    assert path, "podman is not installed: `make test` installs it (TEST_DEB_PACKAGES)"
    return path


def recipe_tag() -> str:
    recipe = f"{RECIPE_VERSION} {SUITE} minbase {' '.join(PACKAGES)} {' '.join(_TRIM)}"
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def python_image() -> str:
    """``localhost/modelyard-test-python:TAG``, built, imported or reused."""
    use_test_containers_conf()
    ref = f"localhost/modelyard-test-python:{recipe_tag()}"
    if _exists(ref):
        return ref
    cache = image_cache()
    tarball = cache / f"python-{recipe_tag()}.tar"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time on the machine
        if not tarball.exists():
            _build_rootfs_tarball(tarball)
        if not _exists(ref):
            subprocess.run([podman(), "import", "--quiet", str(tarball), ref], check=True, capture_output=True)
    return ref


def image_cache() -> Path:
    """$MODELYARD_TEST_IMAGE_CACHE, else /var/cache/modelyard-test-images, else ~/.cache (not root)."""
    wanted = os.environ.get("MODELYARD_TEST_IMAGE_CACHE")
    for folder in [Path(wanted)] if wanted else [Path("/var/cache/modelyard-test-images"),
                                                 Path.home() / ".cache" / "modelyard-test-images"]:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except PermissionError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise AssertionError("no writable folder for the test images' cache; set MODELYARD_TEST_IMAGE_CACHE")


def _exists(ref: str) -> bool:
    return subprocess.run([podman(), "image", "exists", ref]).returncode == 0


def _build_rootfs_tarball(dest: Path) -> None:
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    assert Path(debootstrap).exists(), "debootstrap is not installed: `make test` installs it"
    with tempfile.TemporaryDirectory(prefix="modelyard-rootfs-", dir=dest.parent) as tmp:
        root = Path(tmp) / "root"
        p = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(root), apt_mirror()],
            capture_output=True, text=True,
        )
        assert p.returncode == 0, f"debootstrap failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
        for sub in _TRIM:
            shutil.rmtree(root / sub, ignore_errors=True)
        partial = dest.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial), "."], check=True)
        partial.rename(dest)  # whole or absent: a killed build leaves no half tarball


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this machine's apt uses (deb822 ``.sources`` or one-line lists)."""
    texts = [p.read_text() for p in sorted((etc / "sources.list.d").glob("*.sources"))]
    for text in texts:
        for stanza in text.split("\n\n"):
            if re.search(rf"^Suites:.*\b{SUITE}\b", stanza, re.M) and "debian-security" not in stanza:
                m = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
                if m:
                    return m.group(1)
    lists = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*.list"))]
    for path in lists:
        for line in path.read_text().splitlines() if path.exists() else ():
            m = re.match(rf"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def remove_containers_under(home: Path) -> list[str]:
    """Remove the containers of a test server's jobs (those whose run folder is under ``home``):
    a server stopped in a test's teardown leaves its supervisors' containers, by design."""
    out = subprocess.run([podman(), "ps", "-a", "--format", '{{.Names}} {{index .Labels "modelyard.run_dir"}}'],
                         capture_output=True, text=True, check=True).stdout
    names = [n for n, _, run_dir in (line.partition(" ") for line in out.splitlines())
             if run_dir.startswith(f"{home}/")]
    if names:
        subprocess.run([podman(), "rm", "-f", "-t", "0", *names], capture_output=True, check=True)
    return names
