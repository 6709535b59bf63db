"""Transcribe audio files with a trained speech model.

    python -m rnnseq.transcribe run=experiments/asr/runs/<time> a.wav b.flac ...
    rnnseq-transcribe experiments/asr/runs/<time> a.wav b.flac ...  # the same (run first)
    python -m rnnseq.transcribe run=model.ckpt --greedy *.wav       # decoding.mode=greedy
    python -m rnnseq.transcribe run=<run> decoding.mode=ctc_greedy *.wav   # the CTC head alone
    python -m rnnseq.transcribe run=<run> decoding.beam_size=8 decoding.lm=<asr_lm run> \\
        decoding.lm_weight=0.2 *.wav

Prints ``<file><TAB><transcript>`` per file, in the order given. Any format soundfile reads (wav,
flac, ogg, ...) at any sample rate works; audio is resampled to the model's rate. A file that
cannot be read is reported on stderr and the others are still transcribed (exit status 1).
"""

from __future__ import annotations

import argparse
import sys

from rnnseq.arguments import parse_decoding, take_run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.transcribe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("items", nargs="+",
                        help="run=<run folder or .ckpt> (or that path first), audio files, "
                             "decoding.KEY=VALUE")
    parser.add_argument("--greedy", action="store_true",
                        help="greedy attention decoding instead of beam search (decoding.mode=greedy)")
    parser.add_argument("--batch-size", type=int, default=8, help="files decoded together")
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU where there is one), cpu, cuda, cuda:1, ...")
    args = parser.parse_intermixed_args(argv)
    try:
        args.run, items = take_run(args.items)
    except ValueError as err:
        parser.error(str(err))
    args.decoding = [i for i in items if i.startswith("decoding.")]
    args.files = [i for i in items if not i.startswith("decoding.")]
    if args.run is None or not args.files:
        parser.error("give the run (run=<run folder or checkpoint>, or that path first) and at "
                     "least one audio file")
    try:
        args.decoding = parse_decoding(args.decoding)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.transcribe``; returns the exit status."""
    from rnnseq.console import quiet_third_party
    from rnnseq.resources import limit_kernel_cache

    quiet_third_party()
    limit_kernel_cache()
    args = parse_args(argv)
    from rnnseq.api import Recognizer

    if args.greedy and args.decoding.get("mode", "greedy") != "greedy":
        print(f"error: --greedy contradicts decoding.mode={args.decoding['mode']}; give one of them",
              file=sys.stderr)
        return 2
    try:
        decoding = {**args.decoding, **({"mode": "greedy"} if args.greedy else {})}
        recognizer = Recognizer.from_run(args.run, args.device, **decoding)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    status = 0
    for path, text, error in recognizer.transcribe_files(args.files, args.batch_size):
        if error is not None:
            print(f"error: {path}: {error}", file=sys.stderr)
            status = 1
        else:
            print(f"{path}\t{text}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
