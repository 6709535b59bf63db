"""Decoder steps with attention keys projected once per utterance against once per step.

    .venv/bin/python bench/attention_decoding.py [--batch 32] [--frames 75] [--tokens 60]

The default decoder (1-layer LSTM of 320 units, location-aware attention of 256 dims) over a
``(B, S, 512)`` memory like the default encoder's. rnnseq projects the memory into attention keys
in ``init_state`` and every ``step`` reuses them (:class:`rnnseq.models.attention.AttentionState`);
the naive alternative projects the whole memory again at every output step. Both run ``--tokens``
greedy steps without gradients, interleaved; the script prints the medians and the speed-up, for
each attention type.
"""

from __future__ import annotations

import torch
from common import device_from, interleaved, machine, median
from common import parser as bench_parser

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.attention import AdditiveAttention, GeneralAttention, LocationAttention
from rnnseq.models.decoder import AttentionDecoder

ATTENTIONS = {"location": LocationAttention, "additive": AdditiveAttention,
              "general": GeneralAttention}


def decode(decoder: AttentionDecoder, memory, mask, tokens: int, per_step_keys: bool):
    state = decoder.init_state(memory, mask)
    token = torch.ones(memory.shape[0], dtype=torch.long, device=memory.device)
    for _ in range(tokens):
        if per_step_keys:
            state = state._replace(attention=state.attention._replace(
                keys=decoder.attention.keys(memory)))
        logits, state, _ = decoder.step(token, state, memory, mask)
        token = logits.argmax(-1)
    if memory.is_cuda:
        torch.cuda.synchronize()


def main() -> None:
    parser = bench_parser(__doc__, repeats=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--frames", type=int, default=75, help="encoder frames S")
    parser.add_argument("--memory-dim", type=int, default=512)
    parser.add_argument("--tokens", type=int, default=60)
    args = parser.parse_args()
    device = device_from(args)
    print(f"machine: {machine()}; device {device}")
    print(f"batch {args.batch}, {args.frames} encoder frames of {args.memory_dim}, "
          f"{args.tokens} greedy steps, no gradients")
    torch.manual_seed(0)
    memory = torch.randn(args.batch, args.frames, args.memory_dim, device=device)
    lengths = torch.linspace(args.frames, int(0.9 * args.frames), args.batch).long().to(device)
    mask = make_pad_mask(lengths, args.frames)
    for name, attention in ATTENTIONS.items():
        decoder = AttentionDecoder(vocab_size=31, memory_dim=args.memory_dim, attention=attention,
                                   embed_dim=128, hidden_size=320).to(device).eval()
        once, every = compare(decoder, memory, mask, args.tokens, args.repeats)
        print(f"   {name:<30} once {once * 1000:7.1f} ms, every step {every * 1000:7.1f} ms: "
              f"{every / once:.2f}x faster (target >= 1.5x)")


@torch.no_grad()
def compare(decoder, memory, mask, tokens: int, repeats: int) -> tuple[float, float]:
    """Median seconds of greedy decoding with keys projected once and at every step."""
    run = {"once": lambda: decode(decoder, memory, mask, tokens, False),
           "every": lambda: decode(decoder, memory, mask, tokens, True)}
    run["once"]()
    times = interleaved(run, repeats)
    return median(times["once"]), median(times["every"])

if __name__ == "__main__":
    main()
