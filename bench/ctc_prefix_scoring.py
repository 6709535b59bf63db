"""Joint CTC/attention beam search as the vocabulary grows: 31 (characters), 300 and 1,000
(subwords).

    .venv/bin/python bench/ctc_prefix_scoring.py [--before WORKTREE] [--vocab 31 300 1000]

Each case decodes the same batch of utterances (random encoder memory of the ``asr`` decoder's
size and a peaky random CTC distribution: mostly blank, as a trained CTC head is) with an
untrained attention decoder whose ``<eos>`` is held back, so every hypothesis runs the same
number of steps and the time per utterance measures the cost of a step at that vocabulary.
For each vocabulary it times the search with CTC prefix scores over the whole vocabulary
(``pre_beam`` = V) and with the default pre-beam (``max(32, 3 x beam)``), and says whether the two give the
same hypotheses (they need not: the pre-beam rules out tokens the decoder ranks low, which with
an untrained decoder are often the ones CTC likes). ``--before WORKTREE`` (a ``git worktree``
of the commit before the scorers) also times that commit's search, which scored every token at
every frame in a Python loop, in a subprocess with the same inputs and settings, and checks that
scoring the whole vocabulary gives its hypotheses (no hypothesis ends early here, so the two
searches explore the same space).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from common import REPO, device_from, interleaved, machine, median, parser

if os.environ.get("RNNSEQ_BEFORE"):  # the subprocess that times the older checkout
    sys.path.insert(0, os.environ["RNNSEQ_BEFORE"])


def inputs(vocab: int, utterances: int, frames: int, seed: int = 0):
    """Decoder, ``(B, S, D)`` memory, mask, ``(B, S, V)`` CTC log-probabilities, limits."""
    from rnnseq.data.batching import make_pad_mask
    from rnnseq.models.attention import LocationAttention
    from rnnseq.models.decoder import AttentionDecoder

    torch.manual_seed(seed)
    decoder = AttentionDecoder(vocab, 512, lambda **kw: LocationAttention(**kw), embed_dim=128,
                               hidden_size=320, dropout=0.0).eval()
    with torch.no_grad():
        decoder.output.bias[1] = -30.0  # <eos> (id 1) never wins before the length limit
    lengths = torch.linspace(frames, frames * 0.6, utterances).long()
    memory = torch.randn(utterances, frames, 512)
    logits = torch.randn(utterances, frames, vocab)
    logits[..., 0] += 6.0  # blank dominates most frames
    ctc = torch.log_softmax(logits, -1)
    return decoder, memory, make_pad_mask(lengths, frames), ctc, (lengths * 0.4).long()


def decode(vocab: int, args, pre_beam: int | None):
    from rnnseq.decoding.search import beam_search

    decoder, memory, mask, ctc, limits = inputs(vocab, args.utterances, args.frames)
    options = {} if pre_beam is None else {"pre_beam": pre_beam}
    return beam_search(decoder, memory, mask, limits, 1, beam_size=args.beam, ctc_log_probs=ctc,
                       ctc_weight=0.3, **options)


def time_cases(args) -> dict:
    """``{case: {"seconds": [...], "tokens": [[...], ...]}}`` for this checkout's search."""
    import inspect
    import time

    from rnnseq.decoding.search import beam_search

    scorer_based = "options" in inspect.signature(beam_search).parameters
    cases = {}
    for vocab in args.vocab:
        if scorer_based:
            from rnnseq.decoding.settings import default_pre_beam

            cases[f"{vocab} full"] = (vocab, vocab)
            cases[f"{vocab} pre-beam"] = (vocab, default_pre_beam(args.beam))
        else:
            cases[f"{vocab} full"] = (vocab, None)
    results = {name: {"tokens": None} for name in cases}

    def runner(name):
        vocab, pre_beam = cases[name]

        def run():
            started = time.perf_counter()
            hyps = decode(vocab, args, pre_beam)
            results[name]["tokens"] = [h.tokens for h in hyps]
            return time.perf_counter() - started
        return run

    seconds = interleaved({name: runner(name) for name in cases}, args.repeats)
    for name in cases:
        results[name]["seconds"] = seconds[name]
    return results


def main() -> None:
    p = parser(__doc__, repeats=3)
    p.add_argument("--vocab", type=int, nargs="+", default=[31, 300, 1000])
    p.add_argument("--utterances", type=int, default=8)
    p.add_argument("--frames", type=int, default=150, help="encoder frames of the longest")
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--before", type=Path, help="a git worktree of the commit before the scorers")
    p.add_argument("--json", action="store_true", help="print the results as JSON (internal)")
    args = p.parse_args()
    device_from(args)
    results = time_cases(args)
    if args.json:
        print(json.dumps(results))
        return
    before = {}
    if args.before:
        command = [sys.executable, str(Path(__file__).resolve()), "--json",
                   "--vocab", *map(str, args.vocab), "--utterances", str(args.utterances),
                   "--frames", str(args.frames), "--beam", str(args.beam),
                   "--repeats", str(args.repeats), "--threads", str(torch.get_num_threads())]
        env = {**os.environ, "RNNSEQ_BEFORE": str(args.before.resolve())}
        out = subprocess.run(command, env=env, cwd=args.before, check=True, capture_output=True,
                             text=True).stdout
        before = json.loads(out.strip().splitlines()[-1])
    print(f"machine: {machine()}")
    print(f"{args.utterances} utterances of up to {args.frames} encoder frames, beam {args.beam}, "
          f"ctc_weight 0.3, {args.repeats} interleaved rounds (median); repository {REPO}")
    print("| vocabulary | before: s/utt | full: s/utt | full = before? | pre-beam: s/utt "
          "| pre-beam = full? | pre-beam vs before |")
    print("|---|---|---|---|---|---|---|")

    def agreement(a, b) -> str:
        same = sum(x == y for x, y in zip(a, b))
        return "yes" if same == len(a) else f"{same}/{len(a)}"

    base = None
    for vocab in args.vocab:
        full, pre = results[f"{vocab} full"], results[f"{vocab} pre-beam"]
        full_s = median(full["seconds"]) / args.utterances
        pre_s = median(pre["seconds"]) / args.utterances
        base = base or pre_s
        old = before.get(f"{vocab} full")
        old_s = median(old["seconds"]) / args.utterances if old else None
        print(f"| {vocab} | {f'{old_s:.3f}' if old else '-'} | {full_s:.3f} | "
              f"{agreement(full['tokens'], old['tokens']) if old else '-'} | {pre_s:.3f} "
              f"({pre_s / base:.2f}x of V={args.vocab[0]}) | "
              f"{agreement(pre['tokens'], full['tokens'])} | "
              f"{f'{old_s / pre_s:.1f}x faster' if old else '-'} |")

if __name__ == "__main__":
    main()
