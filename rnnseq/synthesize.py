"""Speak text with a trained text-to-speech run.

    python -m rnnseq.synthesize run=experiments/tts/runs/<time> "good night sweet prince" --out DIR
    python -m rnnseq.synthesize run=<run> --manifest sentences.jsonl --out DIR
    rnnseq-synthesize <run> "good night" --out DIR                 # the run first, without run=
    python -m rnnseq.synthesize run=<run> "to be or not to be" --out DIR synthesis.window=[1,3]

Writes one 16-bit wav per text into ``--out`` (``001.wav``, ``002.wav``, ... for texts on the
command line; ``<id>.wav`` for a manifest's lines) and prints ``<wav><TAB><text>`` per file, with
a note where the stop token never fired. ``--manifest`` reads JSONL lines with a ``text`` (and
``id``, ``speaker`` where given) and also writes ``DIR/manifest.jsonl`` describing the synthesised
audio, ready for ``rnnseq.evaluate --manifest``. ``synthesis.KEY=VALUE`` changes how synthesis
stops and attends (``stop_threshold``, ``stop_tokens``, ``max_length_ratio``, ``window``, ``seed``);
``--speaker`` picks the voice of a multi-speaker run. The same text and seed always give the same
audio, alone or in a batch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SYNTHESIS_PREFIX = "synthesis."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace (``run``, ``texts``, ``synthesis``, ...)."""
    from rnnseq.arguments import parse_assignments, take_run

    parser = argparse.ArgumentParser(prog="python -m rnnseq.synthesize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="*",
                        help="run=<run folder or .ckpt> (or that path first), texts, "
                             "synthesis.KEY=VALUE")
    parser.add_argument("--manifest", type=Path, help="JSONL lines with a text each")
    parser.add_argument("--out", type=Path, required=True, help="folder for the wav files")
    parser.add_argument("--speaker", help="speaker name (multi-speaker runs)")
    parser.add_argument("--batch-size", type=int, default=8, help="texts synthesised together")
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU where there is one), cpu, cuda, cuda:1, ...")
    args = parser.parse_intermixed_args(argv)
    try:
        args.run, items = take_run(args.items)
    except ValueError as err:
        parser.error(str(err))
    settings = [i for i in items if i.startswith(SYNTHESIS_PREFIX)]
    args.texts = [i for i in items if not i.startswith(SYNTHESIS_PREFIX)]
    if args.run is None or bool(args.texts) == bool(args.manifest):
        parser.error("give the run (run=<run folder or checkpoint>, or that path first) and "
                     "either texts or --manifest")
    try:
        args.synthesis = parse_assignments(settings, SYNTHESIS_PREFIX)
    except ValueError as err:
        parser.error(str(err))
    return args


def read_requests(args: argparse.Namespace) -> list[dict]:
    """``[{"id", "text", "speaker"}]`` from the command line's texts or the manifest."""
    if not args.manifest:
        width = max(3, len(str(len(args.texts))))
        return [{"id": f"{i:0{width}d}", "text": t, "speaker": args.speaker}
                for i, t in enumerate(args.texts, start=1)]
    if not args.manifest.is_file():
        raise FileNotFoundError(f"manifest {args.manifest} does not exist")
    requests = []
    for number, line in enumerate(args.manifest.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        entry = json.loads(line)
        if not str(entry.get("text", "")).strip():
            raise ValueError(f"{args.manifest}:{number} has no text")
        requests.append({"id": str(entry.get("id", f"{args.manifest.stem}-{number}")),
                         "text": entry["text"], "speaker": entry.get("speaker", args.speaker)})
    return requests


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.synthesize``; returns the exit status."""
    from rnnseq.console import quiet_third_party
    from rnnseq.resources import limit_kernel_cache

    quiet_third_party()
    limit_kernel_cache()
    args = parse_args(argv)
    import soundfile

    from rnnseq.api import Synthesizer
    from rnnseq.data.manifest import write_manifest

    try:
        requests = read_requests(args)
        synthesizer = Synthesizer.from_run(args.run, args.device, **args.synthesis)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rate = synthesizer.sample_rate
    spoken = synthesizer.speak_each([r["text"] for r in requests], [r["speaker"] for r in requests],
                                    args.batch_size, ids=[r["id"] for r in requests])
    entries, status = [], 0
    try:
        for request, speech in zip(requests, spoken):
            wave, stopped = speech.wave, speech.stopped
            path = args.out / f"{request['id']}.wav"
            soundfile.write(path, wave.clamp(-1, 1).cpu().numpy(), rate, subtype="PCM_16")
            note = "" if stopped else "\t(never stopped: cut at synthesis.max_length_ratio)"
            print(f"{path}\t{request['text']}{note}", flush=True)
            entries.append({"id": request["id"], "audio_filepath": str(path.resolve()),
                            "duration": round(len(wave) / rate, 3), "text": request["text"],
                            **({"speaker": request["speaker"]} if request["speaker"] else {})})
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        status = 2
    if args.manifest and entries:
        write_manifest(args.out / "manifest.jsonl", entries)
        print(f"wrote {args.out / 'manifest.jsonl'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
