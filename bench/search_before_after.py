"""The beam search before the scorers against the scorer-based one, on one trained recogniser.

    .venv/bin/python bench/search_before_after.py --run experiments/asr/runs/<time> \
        --before /tmp/rnnseq-before [--lm experiments/asr_lm/runs/<time>] [--beams 4 8] \
        [--subword-run <BPE asr run> --subword-lm <its LM run>]

``--before`` is a ``git worktree`` of the commit before the scorers. For every beam width and
setting (plain, joint CTC 0.3, LM fusion 0.3 with ``--lm``, both), it runs ``rnnseq.evaluate`` on
the run's test split once with each checkout, one after the other, and prints test WER / CER and
decoding seconds side by side; then the settings only the new search has (coverage, length
bonus, n-best with its oracle WER), and the same settings on a subword recogniser with a
subword LM, which only the new search can decode. Both read the data from ``RNNSEQ_DATA_DIR`` (default: this
checkout's ``data/``). Nothing else should run meanwhile: the times are wall-clock.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from common import REPO, machine


def evaluate(checkout: Path, run: Path, settings: list[str], threads: int) -> dict:
    """``python -m rnnseq.evaluate`` of ``checkout`` (run from inside it, so that its own
    ``rnnseq`` is imported): metrics and decoding seconds."""
    env = {**os.environ, "RNNSEQ_DATA_DIR": os.environ.get("RNNSEQ_DATA_DIR", str(REPO / "data")),
           "PYTHONPATH": str(checkout)}
    command = [sys.executable, "-m", "rnnseq.evaluate", f"run={run}", *settings,
               "--threads", str(threads)]
    out = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} in {checkout}:\n{out.stderr[-2000:]}")
    metrics = dict(re.findall(r"^(test/\S+): ([0-9.]+)$", out.stdout, re.M))
    seconds = float(re.search(r"time: ([0-9.]+) s", out.stdout).group(1))
    return {"metrics": {k: float(v) for k, v in metrics.items()}, "seconds": seconds}


def row(name: str, result: dict) -> str:
    m = result["metrics"]
    extra = "".join(f", {k.split('/')[1]} {100 * v:.2f}" for k, v in m.items()
                    if k not in ("test/wer", "test/cer"))
    return f"{name}: WER {100 * m['test/wer']:.2f} / CER {100 * m['test/cer']:.2f}{extra}, " \
           f"{result['seconds']:.1f} s"


def decoding_settings(lm: Path | None) -> dict[str, list[str]]:
    """The settings both searches run: plain, joint CTC, and with ``lm`` LM fusion and both."""
    settings = {"plain": [], "ctc 0.3": ["decoding.ctc_weight=0.3"]}
    if lm:
        fusion = [f"decoding.lm={lm.resolve()}", "decoding.lm_weight=0.3"]
        settings.update({"lm 0.3": fusion, "ctc 0.3 + lm 0.3": ["decoding.ctc_weight=0.3", *fusion]})
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--lm", type=Path, default=None)
    parser.add_argument("--beams", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--subword-run", type=Path, default=None,
                        help="a data.tokenizer.kind=bpe|unigram asr run (new search only)")
    parser.add_argument("--subword-lm", type=Path, default=None,
                        help="an asr_lm run trained with data.tokenizer.from_run=<subword run>")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    run = args.run.resolve()
    print(f"machine: {machine()}; {args.threads} threads; run {run}")
    settings = decoding_settings(args.lm)
    print("| beam | setting | before: WER / CER | after: WER / CER | before: s | after: s |")
    print("|---|---|---|---|---|---|")
    for beam in args.beams:
        for name, extra in settings.items():
            common = [f"decoding.beam_size={beam}", *extra]
            old = evaluate(args.before.resolve(), run, common, args.threads)
            new = evaluate(REPO, run, common, args.threads)
            o, n = old["metrics"], new["metrics"]
            print(f"| {beam} | {name} | {100 * o['test/wer']:.2f} / {100 * o['test/cer']:.2f} | "
                  f"{100 * n['test/wer']:.2f} / {100 * n['test/cer']:.2f} | "
                  f"{old['seconds']:.1f} | {new['seconds']:.1f} |", flush=True)
    print()
    only_new = {"coverage 0.5 (count)": ["decoding.coverage_weight=0.5"],
                "coverage 0.5 (log)": ["decoding.coverage_weight=0.5", "decoding.coverage_kind=log"],
                "no normalisation, length bonus 0.5": ["decoding.length_bonus=0.5",
                                                       "decoding.length_penalty=0"],
                "ctc 0.3, 8-best": ["decoding.ctc_weight=0.3", "--nbest", "8"]}
    for beam in args.beams:
        for name, extra in only_new.items():
            result = evaluate(REPO, run, [f"decoding.beam_size={beam}", *extra], args.threads)
            print(row(f"beam {beam}, {name}", result), flush=True)
    if args.subword_run:
        print(f"\nsubword recogniser {args.subword_run.resolve()}, LM {args.subword_lm}")
        subword = {**decoding_settings(args.subword_lm),
                   "ctc 0.3, 8-best": ["decoding.ctc_weight=0.3", "--nbest", "8"]}
        for beam in args.beams:
            for name, extra in subword.items():
                result = evaluate(REPO, args.subword_run.resolve(),
                                  [f"decoding.beam_size={beam}", *extra], args.threads)
                print(row(f"beam {beam}, {name}", result), flush=True)


if __name__ == "__main__":
    main()
