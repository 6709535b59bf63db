"""Character language models on the same wall-clock budget: rnnseq's LSTM vs a small transformer.

    .venv/bin/python bench/textgen_lstm_vs_transformer.py [--lstm-run RUN] [hydra overrides ...]

1. Trains ``experiment=textgen`` through ``python -m rnnseq.train`` (or reads a finished
   ``--lstm-run`` folder) and takes its validation loss (nats/char, state carried through the
   held-out play) and its training wall time.
2. Trains a nanoGPT-style "baby GPT" (4 layers, 4 heads, width 128, context 64, batch 12,
   AdamW 1e-3 with warmup and cosine decay to 1e-4 over the budget, no dropout) in a plain PyTorch
   loop for the same wall time on the same training text, then scores it on the same validation
   text in non-overlapping 64-character blocks (as nanoGPT does).
3. Prints both losses, bits per character, throughput and the ratio.

Both use the same number of torch threads (``--threads``, default 2).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rnnseq.checkpoints import load_checkpoint  # noqa: E402
from rnnseq.data.builders.text_sources import ShakespeareText  # noqa: E402
from rnnseq.data.text import encode_stream  # noqa: E402
from rnnseq.data.tokenizer import tokenizer_from_state  # noqa: E402


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, heads, T, C / heads)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyGPT(nn.Module):
    """Pre-norm decoder-only transformer with learned positions and a tied output layer."""

    def __init__(self, vocab_size: int, context: int = 64, layers: int = 4, heads: int = 4,
                 width: int = 128):
        super().__init__()
        self.context = context
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*(Block(width, heads) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tokens.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        positions = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.norm(self.blocks(self.tokens(idx) + self.positions(positions))))


def train_transformer(train: torch.Tensor, seconds: float, vocab_size: int, seed: int,
                      batch_size: int = 12, context: int = 64) -> tuple[TinyGPT, int]:
    """Trains for ``seconds`` of wall time; returns the model and the characters it read."""
    torch.manual_seed(seed)
    model = TinyGPT(vocab_size, context)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.99))
    start, step, chars = time.time(), 0, 0
    while (elapsed := time.time() - start) < seconds:
        progress = elapsed / seconds  # the schedule follows the wall-clock budget
        lr = 1e-3 * min(1.0, (step + 1) / 100)
        if step >= 100:
            lr = 1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = lr
        offsets = torch.randint(len(train) - context - 1, (batch_size,))
        x = torch.stack([train[i : i + context] for i in offsets])
        y = torch.stack([train[i + 1 : i + context + 1] for i in offsets])
        loss = F.cross_entropy(model(x).view(-1, vocab_size), y.view(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        chars += batch_size * context
    return model, chars


@torch.no_grad()
def transformer_loss(model: TinyGPT, stream: torch.Tensor, batch_size: int = 64) -> float:
    """Mean NLL (nats/token) over the stream in non-overlapping context-long blocks."""
    model.eval()
    n = (len(stream) - 1) // model.context
    x = stream[: n * model.context].view(n, model.context)
    y = stream[1 : n * model.context + 1].view(n, model.context)
    total = 0.0
    for i in range(0, n, batch_size):
        logits = model(x[i : i + batch_size])
        total += float(F.cross_entropy(logits.flatten(0, 1), y[i : i + batch_size].flatten(),
                                       reduction="sum"))
    return total / y.numel()


def run_lstm(overrides: list[str], run_dir: Path, threads: int) -> Path:
    cmd = [sys.executable, "-m", "rnnseq.train", "experiment=textgen", f"threads={threads}",
           f"hydra.run.dir={run_dir}", *overrides]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lstm-run", type=Path, help="a finished experiment=textgen run folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument("overrides", nargs="*", help="hydra overrides for the LSTM run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run_dir = args.lstm_run or run_lstm(
        [f"paths.data_dir={args.data_dir}", *args.overrides],
        REPO / "experiments" / "textgen" / "runs" / time.strftime("bench-%Y-%m-%d_%H-%M-%S"),
        args.threads)
    results = json.loads((run_dir / "results.json").read_text())
    hparams = _load_hparams(run_dir)
    lstm_loss = float(results["best_val"]["val/loss"])
    seconds = float(results["train_seconds"])
    tokenizer = tokenizer_from_state(hparams["tokenizer"])

    source = ShakespeareText(args.data_dir, ["much_ado_about_nothing"], ["hamlet"])
    lines = source.load()
    train = encode_stream(lines["train"], tokenizer)
    valid = encode_stream(lines["valid"], tokenizer)
    print(f"transformer: training for {seconds:.0f} s (the LSTM run's training time)", flush=True)
    model, chars = train_transformer(train, seconds, len(tokenizer), args.seed)
    gpt_loss = transformer_loss(model, valid)

    data = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["data"]
    lstm_chars = results["steps"] * data["batch_size"] * data["bptt"]
    lstm_params = _parameters(run_dir / "checkpoints" / "last.ckpt")
    gpt_params = sum(p.numel() for p in model.parameters())
    rows = [("rnnseq LSTM (experiment=textgen)", lstm_loss, lstm_params, lstm_chars),
            ("baby GPT (4 layers x 4 heads x 128)", gpt_loss, gpt_params, chars)]
    print(f"\nsame wall time: {seconds:.0f} s, {args.threads} threads, validation = "
          f"{source.held_out['valid']} ({valid.numel()} chars)")
    print(f"{'model':36s} {'val nats/char':>13s} {'bits/char':>9s} {'params':>8s} {'chars/s':>8s}")
    for name, loss, params, n in rows:
        print(f"{name:36s} {loss:13.3f} {loss / math.log(2):9.3f} {params / 1e6:7.2f}M "
              f"{n / seconds:8.0f}")
    print(f"LSTM - transformer: {lstm_loss - gpt_loss:+.3f} nats/char "
          f"({'LSTM' if lstm_loss < gpt_loss else 'transformer'} lower)")


def _parameters(checkpoint: Path) -> int:
    state = load_checkpoint(checkpoint)["state_dict"]
    unique = {v.data_ptr(): v.numel() for v in state.values()}  # tied weights count once
    return sum(unique.values())


def _load_hparams(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / "tensorboard" / "hparams.yaml").read_text())


if __name__ == "__main__":
    main()
