"""Each recurrent cell against fused ``nn.LSTM``, forward + backward, at the ``asr`` encoder's shape.

    .venv/bin/python bench/recurrent_cells.py [--batch 32] [--steps 60 120] [--repeats 7] [--device cpu]

One unidirectional layer of the default encoder's upper layers (input 512: both directions of
the layer below; 256 units) over ``--steps`` encoder frames (after 4x subsampling, 60-120 for the
embedded corpus's sentences). Cells: ``nn.LSTM`` (fused; oneDNN on CPU, cuDNN on GPU), ``nn.GRU``,
``nn.LSTM(proj_size=128)`` (LSTMP), and rnnseq's peephole and layer-normalised LSTMs
(:mod:`rnnseq.models.cells`, loops over steps with their backward written out). Cases are
interleaved; the medians are printed with the ratio to ``nn.LSTM`` (issue 19 targets on CPU:
peephole <= 2.5x, layer-normalised <= 3.5x).
"""

from __future__ import annotations

import torch
from common import device_from, interleaved, machine, median
from common import parser as bench_parser
from torch import nn

from rnnseq.models.cells import LayerNormLSTM, PeepholeLSTM


def cells(input_size: int, hidden: int) -> dict[str, nn.Module]:
    return {
        "lstm (fused)": nn.LSTM(input_size, hidden, batch_first=True),
        "gru (fused)": nn.GRU(input_size, hidden, batch_first=True),
        f"lstmp (fused, proj {hidden // 2})": nn.LSTM(input_size, hidden, batch_first=True,
                                                      proj_size=hidden // 2),
        "peephole_lstm": PeepholeLSTM(input_size, hidden),
        "ln_lstm": LayerNormLSTM(input_size, hidden),
    }


def forward_backward(module: nn.Module, x: torch.Tensor):
    """A case for :func:`common.interleaved`: one forward and backward pass of ``module``."""
    def run() -> None:
        module(x)[0].sum().backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
    return run


def main() -> None:
    parser = bench_parser(__doc__, repeats=7)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 120])
    parser.add_argument("--input", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = device_from(args)
    print(f"machine: {machine()}; device {device}")
    print(f"one layer {args.input} -> {args.hidden}, batch {args.batch}, forward + backward, "
          f"median of {args.repeats} interleaved rounds")
    torch.manual_seed(0)
    modules = {name: m.to(device) for name, m in cells(args.input, args.hidden).items()}
    for steps in args.steps:
        x = torch.randn(args.batch, steps, args.input, device=device, requires_grad=True)

        cases = {name: forward_backward(m, x) for name, m in modules.items()}
        for run in cases.values():  # warm-up
            run()
        times = interleaved(cases, args.repeats)
        base = median(times["lstm (fused)"])
        print(f"\n{steps} steps:")
        for name, values in times.items():
            print(f"  {name:28s} {1000 * median(values):8.1f} ms   {median(values) / base:5.2f}x")


if __name__ == "__main__":
    main()
