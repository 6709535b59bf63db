"""Each recurrent cell against fused ``nn.LSTM``, forward + backward, at the ``asr`` model's shapes.

    .venv/bin/python bench/recurrent_cells.py [--batch 32] [--steps 60 120] [--targets 60] [--repeats 7]

**Encoder layer**: one unidirectional layer of the default encoder's upper layers (input 512:
both directions of the layer below; 256 units) over ``--steps`` encoder frames (after 4x
subsampling, 60-120 for the embedded corpus's sentences), built by name as the models build it
(:func:`rnnseq.models.recurrent.build_recurrent`): ``lstm`` (fused; oneDNN on CPU, cuDNN on GPU),
``gru``, ``rnn``, ``lstmp`` (``nn.LSTM(proj_size=128)``), and rnnseq's ``peephole_lstm`` and
``ln_lstm`` (:mod:`rnnseq.models.cells`: loops over steps with their backward written out, no
compilation). Issue 19's targets on CPU: peephole <= 2.5x, layer-normalised <= 3.5x.

**Decoder teacher forcing**: the ``asr`` attention decoder (320 units, location attention) over
``--targets`` target steps and a memory of ``--steps`` frames, forward + backward: the fused path
against the cells, zoneout 0.1 and scheduled sampling 0.1 (both a Python loop over steps).

Cases are interleaved; the medians are printed with the ratio to the fused LSTM.
"""

from __future__ import annotations

import functools

import torch
from common import device_from, interleaved, machine, median
from common import parser as bench_parser
from torch import nn

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.attention import LocationAttention
from rnnseq.models.decoder import AttentionDecoder
from rnnseq.models.recurrent import CELLS, build_recurrent


def forward_backward(module: nn.Module, *inputs, **options):
    """A case for :func:`common.interleaved`: one forward and backward pass of ``module``."""
    def run() -> None:
        module(*inputs, **options)[0].sum().backward()
        if inputs[0].device.type == "cuda":
            torch.cuda.synchronize()
    return run


def timed(cases: dict, repeats: int, base: str) -> None:
    for run in cases.values():  # warm-up
        run()
    times = interleaved(cases, repeats)
    reference = median(times[base])
    for name, values in times.items():
        print(f"  {name:28s} {1000 * median(values):8.1f} ms   {median(values) / reference:5.2f}x")


def decoders(memory_dim: int, device: torch.device) -> dict[str, tuple[nn.Module, float]]:
    """The ``asr`` decoder with each setting, and the scheduled sampling probability to run it
    with."""
    attention = functools.partial(LocationAttention, attention_dim=256, conv_channels=10,
                                  conv_kernel=31)

    def decoder(cell="lstm", zoneout=0.0):
        return AttentionDecoder(32, memory_dim, attention, embed_dim=128, hidden_size=320,
                                cell=cell, zoneout=zoneout).to(device)

    return {"lstm (fused)": (decoder(), 0.0), "gru": (decoder("gru"), 0.0),
            "lstmp": (decoder("lstmp"), 0.0), "peephole_lstm": (decoder("peephole_lstm"), 0.0),
            "ln_lstm": (decoder("ln_lstm"), 0.0), "lstm, zoneout 0.1": (decoder(zoneout=0.1), 0.0),
            "lstm, sampling 0.1": (decoder(), 0.1)}


def main() -> None:
    parser = bench_parser(__doc__, repeats=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 120])
    parser.add_argument("--input", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--targets", type=int, default=60, help="decoder target steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_from(args)
    print(f"machine: {machine()}; device {device}")
    print(f"batch {args.batch}, forward + backward, median of {args.repeats} interleaved rounds; "
          f"no case compiles anything (compile time 0)")
    torch.manual_seed(0)
    layers = {name: build_recurrent(name, args.input, args.hidden).to(device) for name in CELLS}
    for steps in args.steps:
        x = torch.randn(args.batch, steps, args.input, device=device, requires_grad=True)
        print(f"\nencoder layer {args.input} -> {args.hidden}, {steps} steps:")
        timed({name: forward_backward(m, x) for name, m in layers.items()}, args.repeats, "lstm")
    for steps in args.steps:
        memory = torch.randn(args.batch, steps, args.input, device=device, requires_grad=True)
        mask = make_pad_mask(torch.full((args.batch,), steps, device=device), steps)
        tokens = torch.randint(0, 32, (args.batch, args.targets), device=device)
        print(f"\ndecoder teacher forcing, {args.targets} targets over {steps} frames:")
        cases = {name: forward_backward(m, memory, mask, tokens, sampling_probability=p)
                 for name, (m, p) in decoders(args.input, device).items()}
        timed(cases, args.repeats, "lstm (fused)")


if __name__ == "__main__":
    main()
