"""MkDocs hook: the site is the repository's documentation as it lies in the repository.

Every page and file keeps its path from the repository's root (``README.md`` is the home page,
``docs/configs.md`` a chapter, ``experiments/asr/README.md`` a results page, ``rnnseq/api.py`` a
file a page links to), so a relative link that works on a checkout or a code host works on the
site too, and strict mode checks every one of them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def repository_files() -> list[str]:
    """Tracked files and new ones git does not ignore, relative to the root: the pages and every
    file a page may link to (sources, configs, figures, word lists)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return sorted(p for p in set(listed.splitlines()) if (ROOT / p).is_file())


def on_files(files: Files, config) -> Files:
    site = Files([])
    for path in repository_files():
        site.append(File(path, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return site
