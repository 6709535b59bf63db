"""Sample text from a trained language model.

    python -m rnnseq.generate experiments/textgen/runs/<time> --prompt "ROMEO." --length 400 \\
        --temperature 0.8 --top-k 40 --top-p 0.95 --seed 1
    rnnseq-generate run=experiments/textgen/runs/<time> --prompt "ROMEO."    # run= works too

The first argument (or ``run=``) is a run folder (its best checkpoint is used, else ``last.ckpt``) or a
checkpoint file. The prompt is printed followed by the sampled continuation; ``<eos>`` tokens
become line breaks.
"""

from __future__ import annotations

import argparse
import sys

from rnnseq.arguments import strip_key


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line as a namespace."""
    parser = argparse.ArgumentParser(prog="python -m rnnseq.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run folder or .ckpt file of a language model (PATH or run=PATH)")
    parser.add_argument("--prompt", default="", help="text to continue (default: a new line)")
    parser.add_argument("--length", type=int, default=300, help="tokens to generate")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="softmax temperature; 0 picks the most likely token (greedy)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k best (0: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1: off)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--num-samples", type=int, default=1, help="independent samples to print")
    parser.add_argument("--device", default="auto",
                        help="auto (a GPU where there is one), cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)
    args.run = strip_key(args.run)
    if args.length < 0 or args.num_samples < 1:
        parser.error("--length must be >= 0 and --num-samples >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """``python -m rnnseq.generate``; returns the exit status."""
    from rnnseq.console import quiet_third_party
    from rnnseq.resources import limit_kernel_cache

    quiet_third_party()
    limit_kernel_cache()
    args = parse_args(argv)
    from rnnseq.api import TextGenerator

    try:
        generator = TextGenerator.from_run(args.run, args.device)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        text = generator.sample(args.prompt, args.length, args.temperature, args.top_k,
                                args.top_p, seed=seed)
        if i:
            print("\n" + "-" * 40)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
