"""Bidirectional recurrent layers over padded batches: rnnseq's padded path against packed ones.

    .venv/bin/python bench/recurrent_layers.py [--batch 32] [--steps 60 120] [--repeats 7] [--device cpu]

Three ways to run the default encoder's stack (3 bidirectional LSTM layers of 256 units over
256-dim inputs) forward and backward on a batch whose lengths spread like a length-bucketed one
(the longest ``S``, the others down to ``0.9 S``):

* **padded** (rnnseq's default, :class:`rnnseq.models.recurrent.RecurrentLayer`): each direction
  is one fused unidirectional ``nn.LSTM`` call over the padded batch; the backward direction reads
  each sequence reversed within its own length, outputs are masked. Exact: equals packing.
* **packed**: one ``nn.LSTM(bidirectional=True)`` call per layer on ``pack_padded_sequence``.
* **padded, inexact**: one ``nn.LSTM(bidirectional=True)`` call on the padded batch, outputs
  masked; the backward direction starts on padding (the error is printed).

Cases are interleaved and the medians printed with the ratio to the padded path.
"""

from __future__ import annotations

import torch
from common import device_from, interleaved, machine, median
from common import parser as bench_parser
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnseq.data.batching import make_pad_mask
from rnnseq.models.recurrent import RecurrentLayer


class PackedStack(nn.Module):
    def __init__(self, layers: list[RecurrentLayer], hidden: int):
        super().__init__()
        self.layers = nn.ModuleList()
        for layer in layers:  # same weights as the padded stack, in one bidirectional module
            rnn = nn.LSTM(layer.forward_rnn.input_size, hidden, batch_first=True, bidirectional=True)
            with torch.no_grad():
                for name, param in layer.forward_rnn.named_parameters():
                    getattr(rnn, name).copy_(param)
                    getattr(rnn, f"{name}_reverse").copy_(getattr(layer.backward_rnn, name))
            self.layers.append(rnn)

    def forward(self, x, lengths, packed: bool = True):
        for rnn in self.layers:
            if packed:
                out, _ = rnn(pack_padded_sequence(x, lengths.cpu(), batch_first=True,
                                                  enforce_sorted=False))
                x, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            else:
                x, _ = rnn(x)
                x = x * make_pad_mask(lengths, x.shape[1]).unsqueeze(-1)
        return x


def main() -> None:
    parser = bench_parser(__doc__, repeats=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 120],
                        help="longest sequence (encoder frames after subsampling)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    args = parser.parse_args()
    device = device_from(args)
    torch.manual_seed(0)
    padded = nn.ModuleList(
        RecurrentLayer(args.hidden if i == 0 else 2 * args.hidden, args.hidden)
        for i in range(args.layers)).to(device)
    packed = PackedStack(list(padded), args.hidden).to(device)
    print(f"machine: {machine()}; device {device}")
    print(f"{args.layers} bidirectional LSTM layers of {args.hidden}, batch {args.batch}, "
          f"forward + backward")

    for steps in args.steps:
        compare(padded, packed, args.batch, steps, args.hidden, args.repeats, device)


def compare(padded: nn.ModuleList, packed: PackedStack, batch: int, steps: int, hidden: int,
            repeats: int, device: torch.device) -> None:
    """Times the three paths on one batch whose longest sequence has ``steps`` steps."""
    lengths = torch.linspace(steps, int(0.9 * steps), batch).round().long().to(device)
    x = torch.randn(batch, steps, hidden, device=device)
    x = x * make_pad_mask(lengths, steps).unsqueeze(-1)

    def run_padded():
        h = x
        for layer in padded:
            h = layer(h, lengths)
        return h

    paths = {"padded": run_padded, "packed": lambda: packed(x, lengths),
             "padded, inexact": lambda: packed(x, lengths, packed=False)}
    exact = run_padded()
    errors = {name: (fn() - exact).abs().max().item() for name, fn in paths.items()}

    def forward_backward(fn):
        def run():
            fn().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    cases = {name: forward_backward(fn) for name, fn in paths.items()}
    for run in cases.values():
        run()  # warm-up
    times = interleaved(cases, repeats)
    base = median(times["padded"])
    print(f"\nlongest {steps} steps:")
    for name, values in times.items():
        print(f"   {name:<16} {median(values) * 1000:8.1f} ms  {median(values) / base:5.2f}x  "
              f"max |output - padded| {errors[name]:.1e}")

if __name__ == "__main__":
    main()
