"""rnnseq against SpeechBrain on the same model, the same batches and the same machine.

    .venv/bin/pip install -e '.[bench]'     # SpeechBrain: a benchmark extra, never a dependency
    .venv/bin/python bench/peer_speechbrain.py [--steps 12] [--warmup 2] [--repeats 5]
        [--parts params,train,decode,memory,wer] [--decode-steps 30] [--threads 2]
        [--device cuda] [--precision bf16]

The peer is the model a SpeechBrain recipe builds for joint CTC/attention speech recognition,
made of SpeechBrain's own layers, at the sizes of ``experiment=asr``: two stride-2 3x3
convolutions of 32 channels and a linear layer (``speechbrain.nnet.CNN.Conv2d``,
``speechbrain.nnet.linear.Linear``) in a ``Sequential`` as its CRDNN recipes use, three
bidirectional LSTM layers of 256 (``speechbrain.nnet.RNN.LSTM``), a CTC head, and
``AttentionalRNNDecoder`` (one LSTM layer of 320, location-aware attention of 256 with 10
filters of width 31, embeddings of 128); its global ``InputNormalization``; its ``ctc_loss`` and
``nll_loss`` (label smoothing 0.1, CTC weight 0.5) with relative lengths; and, for decoding,
``S2SRNNBeamSearcher`` with its ``CTCScorer``.

SpeechBrain's decoder always feeds the previous context into its LSTM's input, so the rnnseq side
is measured twice: ``model.decoder.input_feeding=true`` (the same computation, parameter counts
within 2 %) and the shipped ``experiment=asr`` (no input feeding: the decoder LSTM runs over all
target steps in one call; about 7 % fewer parameters).

Both sides run in one process with the same intra-op threads, on the same shuffled training
batches of the embedded corpus (``data.sorted_epochs=0``), from a fixed seed, with the same AdamW,
warm-up/cosine schedule and gradient clipping of the config (a plain loop on both sides: rnnseq's
Lightning loop adds 0-3 %, see ``framework_overhead.py``). Parts:

* ``params``: parameter counts of both sides, by part.
* ``train``: seconds per training step (forward, joint CTC/attention loss, backward, clipping,
  optimiser), the mean over the steps after ``--warmup``; sides interleaved, ``--repeats`` rounds;
  the median of each side and of the rounds' ratios. Target: rnnseq <= 0.8x SpeechBrain's time.
* ``decode``: beam search (beam 4 and 8, batch 1 and 32) over encoder outputs computed beforehand,
  ``<eos>`` suppressed so that every hypothesis takes exactly ``--decode-steps`` decoder steps on
  both sides (counted, not assumed); attention alone and with each side's joint CTC prefix scoring
  (weight 0.3). Milliseconds per utterance-step, medians of interleaved rounds. Target: rnnseq
  >= 1.5x SpeechBrain's throughput at batch 32.
* ``memory``: peak resident memory of one training step (two, so that the optimiser's state
  exists) on the batch with the most frames, each side in its own child process. The peak is reset
  (``/proc/self/clear_refs``) after the model and data are built, so the figure is the step's.
* ``wer`` (only when asked for, it trains for minutes): validation WER of ``--wer-sides`` after
  ``--minutes`` of training each, one side after the other, on the training batches epoch after
  epoch, then each side's own beam search (beam 4, its own end rules).

Before anything is timed the glibc allocator is settled (:func:`settle_allocator`), so that every
case sees the large blocks served the way a training or evaluation process does.

The models are untrained: step times do not depend on the weights, and the fixed step count keeps
decoding from depending on them.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import SHUFFLED, build_experiment, compose, interleaved, machine, median, timed_training
from lightning.fabric.utilities.apply_func import move_data_to_device

from rnnseq.data.batching import Batch, collate_examples
from rnnseq.decoding.scorers import build_scorers, scorer_sources
from rnnseq.decoding.search import scorer_beam_search
from rnnseq.decoding.settings import default_pre_beam
from rnnseq.train import build_task

PARTS = ("params", "train", "decode", "memory", "wer")
DEFAULT_PARTS = PARTS[:4]  # wer trains each side for minutes: asked for by name
RNNSEQ_SIDES = {"rnnseq (input feeding)": ["model.decoder.input_feeding=true"],
                "rnnseq (experiment=asr)": []}
PEER = "SpeechBrain"
DECODE_CTC_WEIGHT = 0.3


def speechbrain_missing() -> str | None:
    """Why SpeechBrain cannot be used here, or None."""
    try:
        import speechbrain  # noqa: F401
    except ImportError as error:
        return (f"SpeechBrain is not installed ({error}); install the benchmark extra: "
                f".venv/bin/pip install -e '.[bench]'")
    return None


class SpeechBrainASR(torch.nn.Module):
    """``experiment=asr``'s sizes built the way a SpeechBrain recipe builds a joint CTC/attention
    model, from SpeechBrain's own modules.

    SpeechBrain's joint decoding needs ``<bos>``, ``<eos>`` and the CTC blank apart, and its CTC
    prefix scorer reads ``<bos>`` as a CTC output, so ``<bos>`` is one more token (id
    ``vocab_size``, never a target) of the embedding, the output layer and the CTC head; the
    other ids are rnnseq's.
    """

    def __init__(self, n_mels: int, vocab_size: int, blank_id: int, eos_id: int, model_cfg,
                 dropout: float = 0.1):
        super().__init__()
        from speechbrain.nnet.CNN import Conv2d
        from speechbrain.nnet.containers import Sequential
        from speechbrain.nnet.embedding import Embedding
        from speechbrain.nnet.linear import Linear
        from speechbrain.nnet.RNN import LSTM, AttentionalRNNDecoder
        from speechbrain.processing.features import InputNormalization

        enc, dec, att = model_cfg.encoder, model_cfg.decoder, model_cfg.attention
        self.blank_id, self.eos_id, self.bos_id = blank_id, eos_id, vocab_size
        self.normalize = InputNormalization(norm_type="global")
        self.encoder = Sequential(input_shape=[None, None, n_mels])
        for i in range(2):  # a factor 4: two stride-2 convolutions, as rnnseq's conv front end
            self.encoder.append(Conv2d, out_channels=enc.conv_channels, kernel_size=(3, 3),
                                stride=(2, 2), layer_name=f"conv{i}")
            self.encoder.append(torch.nn.ReLU(), layer_name=f"relu{i}")
        self.encoder.append(Linear, n_neurons=enc.hidden_size, combine_dims=True, layer_name="proj")
        self.encoder.append(torch.nn.Dropout(dropout), layer_name="dropout")
        self.encoder.append(LSTM, hidden_size=enc.hidden_size, num_layers=enc.num_layers,
                            bidirectional=True, dropout=dropout, layer_name="lstm")
        memory_dim = 2 * enc.hidden_size
        self.ctc_head = Linear(n_neurons=vocab_size + 1, input_size=memory_dim)
        self.embed = Embedding(num_embeddings=vocab_size + 1, embedding_dim=dec.embed_dim)
        self.decoder = AttentionalRNNDecoder(
            rnn_type="lstm", attn_type="location", hidden_size=dec.hidden_size,
            attn_dim=att.attention_dim, num_layers=dec.num_layers, enc_dim=memory_dim,
            input_size=dec.embed_dim, channels=att.conv_channels,
            kernel_size=att.conv_kernel // 2,  # SpeechBrain's filters are 2k + 1 wide
            dropout=dropout)
        self.output = Linear(n_neurons=vocab_size + 1, input_size=dec.hidden_size)

    @torch.no_grad()
    def set_statistics(self, batches: list[Batch]) -> None:
        """Global feature statistics from training batches, as the first steps of training
        gather them (an untrained model decodes with them)."""
        training = self.normalize.training
        self.normalize.train()
        for batch in batches:
            self.normalize(batch.features, batch.feature_lengths.float() / batch.features.shape[1])
        self.normalize.train(training)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S', 512)`` encoder states and ``(B,)`` relative lengths, as SpeechBrain passes
        them."""
        relative = batch.feature_lengths.float() / batch.features.shape[1]
        features = self.normalize(batch.features, relative)
        return self.encoder(features), relative

    def losses(self, batch: Batch, ctc_weight: float, label_smoothing: float) -> torch.Tensor:
        """The joint loss of a SpeechBrain recipe: CTC on the encoder, NLL on the decoder."""
        from speechbrain.nnet.losses import ctc_loss, nll_loss

        memory, relative = self.encode(batch)
        targets, lengths = batch.targets, batch.target_lengths
        b, t = targets.shape
        with_bos = torch.cat([targets.new_full((b, 1), self.bos_id), targets], dim=1)
        with_eos = torch.cat([targets, targets.new_zeros(b, 1)], dim=1)
        with_eos.scatter_(1, lengths.unsqueeze(1), self.eos_id)
        hidden, _ = self.decoder(self.embed(with_bos), memory, relative)
        log_probs = torch.log_softmax(self.output(hidden), dim=-1)
        ctc_log_probs = torch.log_softmax(self.ctc_head(memory), dim=-1)
        ctc = ctc_loss(ctc_log_probs, targets, relative, lengths.float() / t, self.blank_id)
        nll = nll_loss(log_probs, with_eos, length=(lengths + 1).float() / (t + 1),
                       label_smoothing=label_smoothing)
        return ctc_weight * ctc + (1 - ctc_weight) * nll

    def searcher(self, beam_size: int, steps: int, ctc_weight: float, fixed: bool = True):
        """SpeechBrain's beam searcher for this model: with ``fixed``, ``<eos>`` suppressed for
        ``steps`` steps and the search stopped after them, through its own hook for decoding
        lengths; otherwise its defaults (at most one token per encoder frame)."""
        from speechbrain.decoders import CTCScorer, S2SRNNBeamSearcher, ScorerBuilder

        class FixedSteps(S2SRNNBeamSearcher):
            def change_max_decoding_length(self, min_decode_steps, max_decode_steps):
                return (steps, steps) if fixed else (min_decode_steps, max_decode_steps)

        scorer = None
        if ctc_weight > 0:
            ctc = CTCScorer(ctc_fc=self.ctc_head, blank_index=self.blank_id, eos_index=self.eos_id)
            scorer = ScorerBuilder(full_scorers=[ctc], weights={"ctc": ctc_weight})
        return FixedSteps(embedding=self.embed, decoder=self.decoder, linear=self.output,
                          bos_index=self.bos_id, eos_index=self.eos_id, min_decode_ratio=0.0,
                          max_decode_ratio=1.0, beam_size=beam_size, scorer=scorer,
                          using_eos_threshold=not fixed)


# -- building both sides ------------------------------------------------------------------------

def build_sides(args) -> tuple[object, dict, object]:
    """The datamodule, ``{side name: model}`` and the config of the shipped recipe."""
    # no warm-up: the schedule's shape does not change the step time, and a warm-up longer than
    # the timed steps is warned about
    base = ["experiment=asr", SHUFFLED, "data.num_workers=0", "task.scheduler.warmup_steps=0"]
    if args.threads:
        base.append(f"threads={args.threads}")
    cfg = compose(base)
    datamodule, task = build_experiment(cfg)
    sides = {}
    for name, overrides in RNNSEQ_SIDES.items():
        if not overrides:
            sides[name] = task
            continue
        torch.manual_seed(cfg.seed)
        sides[name] = build_task(compose(base + overrides), datamodule)
    tokenizer = task.tokenizer
    torch.manual_seed(cfg.seed)
    peer = SpeechBrainASR(int(task.hparams.features["n_mels"]), len(tokenizer),
                          tokenizer.blank_id, tokenizer.eos_id, cfg.model)
    peer.set_statistics(training_batches(datamodule, 4))
    peer.tokenizer = tokenizer  # ids to text for the wer part
    sides[PEER] = peer
    return datamodule, sides, cfg


def is_peer(model) -> bool:
    return isinstance(model, SpeechBrainASR)


def parameter_groups(model) -> dict[str, int]:
    """Parameters by part: front end, encoder LSTMs, CTC head, embedding, decoder LSTM, attention,
    output layers."""
    if is_peer(model):
        parts = {"front end": [model.encoder.conv0, model.encoder.conv1, model.encoder.proj],
                 "encoder LSTMs": [model.encoder.lstm], "CTC head": [model.ctc_head],
                 "embedding": [model.embed], "decoder LSTM": [model.decoder.rnn],
                 "attention": [model.decoder.attn],
                 "output layers": [model.decoder.proj, model.output]}
    else:
        m = model.model
        parts = {"front end": [m.encoder.front], "encoder LSTMs": [m.encoder.layers],
                 "CTC head": [m.ctc_head], "embedding": [m.decoder.embed],
                 "decoder LSTM": [m.decoder.rnn], "attention": [m.decoder.attention],
                 "output layers": [m.decoder.combine, m.decoder.output]}
    counts = {name: sum(p.numel() for module in modules for p in module.parameters())
              for name, modules in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def loss_function(model, cfg, device, precision: str):
    """``batch -> loss`` of one side on ``device``, under bf16 autocast if asked."""
    task_cfg = cfg.task

    def autocast():
        if precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    if is_peer(model):
        def loss_of(batch):
            batch = move_data_to_device(batch, device)
            with autocast():
                return model.losses(batch, task_cfg.ctc_weight, task_cfg.label_smoothing)
    else:
        def loss_of(batch):
            batch = model.transfer_batch_to_device(batch, device, 0)
            with autocast():
                return model.compute_losses(batch)["loss"]
    return loss_of


def training_batches(datamodule, count: int) -> list[Batch]:
    """The first ``count`` training batches (shuffled order from the config's seed)."""
    return list(itertools.islice(datamodule.train_dataloader(), count))


# -- the parts ------------------------------------------------------------------------------------

def report_parameters(sides: dict) -> None:
    counts = {name: parameter_groups(model) for name, model in sides.items()}
    names = list(sides)
    print("\nparameters by part:")
    print(f"   {'part':<15}" + "".join(f"{n:>26}" for n in names))
    for part in counts[names[0]]:
        print(f"   {part:<15}" + "".join(f"{counts[n][part]:>26,}" for n in names))
    peer_total = counts[PEER]["total"]
    for name in names:
        if name != PEER:
            print(f"   {name} / {PEER}: {counts[name]['total'] / peer_total:.3f}")


def fresh(model, seed: int):
    copy_ = copy.deepcopy(model)
    torch.manual_seed(seed)
    return copy_


def report_training(sides: dict, batches: list[Batch], cfg, args, device) -> None:
    def case(name):
        def run():
            model = fresh(sides[name], cfg.seed).to(device).train()
            loss_of = loss_function(model, cfg, device, args.precision)
            mean, losses = timed_training(loss_of, model.parameters(), batches, cfg,
                                          len(batches), args.warmup)
            if not all(torch.isfinite(loss) for loss in losses):
                raise RuntimeError(f"{name}: a training loss is not finite")
            return mean
        return run

    times = interleaved({name: case(name) for name in sides}, args.repeats)
    print(f"\ntraining step ({len(batches)} shuffled batches, the first {args.warmup} untimed; "
          f"{args.repeats} interleaved rounds):")
    peer = times[PEER]
    for name, values in times.items():
        spread = ", ".join(f"{v * 1000:.0f}" for v in values)
        line = f"   {name:<26} median {median(values) * 1000:7.1f} ms  ({spread})"
        if name != PEER:
            ratios = [a / b for a, b in zip(values, peer)]
            line += (f"  time / {PEER}: {median(values) / median(peer):.3f} of the medians, "
                     f"{median(ratios):.3f} median of the rounds' ratios "
                     f"({min(ratios):.3f}-{max(ratios):.3f})")
        print(line)


class StepCounter:
    """Counts calls of one method of one object (the decoder step of each side)."""

    def __init__(self, owner, method: str):
        self.owner, self.method, self.calls = owner, method, 0
        original = getattr(owner, method)

        def counted(*a, **k):
            self.calls += 1
            return original(*a, **k)

        setattr(owner, method, counted)

    def close(self) -> None:
        delattr(self.owner, self.method)


def rnnseq_search(task, memory, mask, lengths, beam_size: int, steps: int, ctc_weight: float):
    """rnnseq's beam search over encoder outputs with ``<eos>`` ruled out until the last of
    ``steps`` decoder steps, where it is the only way on (the search's own length rules)."""
    tokenizer, decoder = task.tokenizer, task.model.decoder
    decoding = {**task.hparams.decoding, "beam_size": beam_size, "ctc_weight": ctc_weight}
    sources = scorer_sources(decoder, memory, mask, decoder.vocab_size, tokenizer.blank_id,
                             tokenizer.eos_id,
                             ctc_log_probs=task.model.ctc_log_probs(memory) if ctc_weight else None,
                             memory_lengths=lengths)
    limit = torch.full_like(lengths, steps - 1)  # steps - 1 tokens, then <eos>: `steps` steps
    return scorer_beam_search(build_scorers(decoding, sources), memory.shape[0], decoder.vocab_size, limit,
                tokenizer.eos_id, beam_size=beam_size, min_lengths=limit,
                pre_beam=default_pre_beam(beam_size), device=memory.device)


def encoded(model, batches: list[Batch], device):
    """Each side's encoder output for each batch, computed once (decoding alone is timed)."""
    with torch.no_grad():
        if is_peer(model):
            return [model.encode(move_data_to_device(b, device)) for b in batches]
        return [model.encode(model.transfer_batch_to_device(b, device, 0)) for b in batches]


def search_case(model, inputs, beam_size: int, steps: int, ctc_weight: float, device, precision):
    """A function that decodes every input once and returns the decoder steps it took."""
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    if is_peer(model):
        searcher = model.searcher(beam_size, steps, ctc_weight)

        def run():
            lengths = []
            with torch.no_grad(), autocast:
                for memory, relative in inputs:
                    hyps, *_ = searcher(memory, relative)
                    lengths.extend(len(h) + 1 for h in hyps)  # + 1: the <eos> it closes with
            return lengths
    else:
        def run():
            lengths = []
            with torch.no_grad(), autocast:
                for enc in inputs:
                    nbest = rnnseq_search(model, enc.memory, enc.mask, enc.lengths, beam_size,
                                          steps, ctc_weight)
                    lengths.extend(len(h[0].tokens) + 1 for h in nbest)  # + 1: <eos>
            return lengths
    return run


def decoding_items(datamodule, steps: int, count: int = 32) -> list:
    """The first ``count`` test utterances long enough for any ``steps`` tokens to have a CTC
    path: ``2 * steps`` encoder frames (a blank between repeated tokens), ``8 * steps`` feature
    frames after the x4 front end. With fewer, joint CTC scoring rules out every hypothesis of an
    untrained model that repeats tokens."""
    dataset = datamodule.datasets["test"]
    items = [item for item in (dataset[i] for i in range(len(dataset)))
             if item.features.shape[0] >= 8 * steps]
    if len(items) < count:
        raise SystemExit(f"only {len(items)} test utterances have {8 * steps} frames for "
                         f"--decode-steps {steps}; lower it")
    return items[:count]


def report_decoding(sides: dict, test_items, args, device) -> None:
    n = args.decode_steps
    batch_sets = {32: [collate_examples(test_items[:32])],
                  1: [collate_examples([item]) for item in test_items[:args.single]]}
    models = {name: model.to(device).eval() for name, model in sides.items()}
    inputs = {(name, size): encoded(model, batches, device)
              for name, model in models.items() for size, batches in batch_sets.items()}
    print(f"\nbeam search, {n} decoder steps per hypothesis (<eos> suppressed), encoder outputs "
          f"precomputed; milliseconds per utterance-step (median of {args.repeats} rounds); "
          f"throughput against {PEER}:")
    for ctc_weight in (0.0, DECODE_CTC_WEIGHT):
        for beam_size in (4, 8):
            for size, batches in batch_sets.items():
                utterances = sum(b.features.shape[0] for b in batches)
                cases, checks = {}, {}
                for name, model in models.items():
                    run = search_case(model, inputs[(name, size)], beam_size, n, ctc_weight,
                                      device, args.precision)
                    owner, method = ((model.decoder, "forward_step") if is_peer(model)
                                     else (model.model.decoder, "step"))
                    counter = StepCounter(owner, method)
                    lengths = run()  # untimed: warm-up and the check that every side takes n steps
                    counter.close()
                    checks[name] = (counter.calls / len(batches), set(lengths))
                    cases[name] = timed_run(run, device)
                if any(calls != n or lengths != {n} for calls, lengths in checks.values()):
                    raise RuntimeError(f"decoder steps differ from {n}: {checks}")
                times = interleaved(cases, args.repeats)
                per_step = {name: median(v) / (utterances * n) for name, v in times.items()}
                label = f"beam {beam_size}, batch {size:>2}, " + (
                    f"joint CTC {ctc_weight}" if ctc_weight else "attention only")
                parts = [f"{name} {ms * 1000:.3f}" for name, ms in per_step.items()]
                speedups = [f"{name} {per_step[PEER] / per_step[name]:.2f}x"
                            for name in per_step if name != PEER]
                print(f"   {label:<42} " + "; ".join(parts) + "  | " + "; ".join(speedups))


def timed_run(run, device):
    def timed():
        run()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return timed


def peak_memory_child(side: str, args) -> None:
    """In a child process: one side's peak resident memory over two training steps on the batch
    with the most frames, the peak reset after everything is built. Prints one JSON line."""
    device = torch.device(args.device)
    datamodule, sides, cfg = build_sides(args)
    batches = training_batches(datamodule, args.steps)
    batch = max(batches, key=lambda b: b.features.shape[0] * b.features.shape[1])
    model = sides[side].to(device).train()
    del sides
    loss_of = loss_function(model, cfg, device, args.precision)
    resident = resident_mib()
    Path("/proc/self/clear_refs").write_text("5")  # peak resident memory := current
    timed_training(loss_of, model.parameters(), [batch, batch], cfg, 2, 0)
    print(json.dumps({"side": side, "before_mib": resident, "peak_mib": peak_mib(),
                      "batch": list(batch.features.shape)}))


def resident_mib() -> float:
    return _status_kib("VmRSS") / 1024


def peak_mib() -> float:
    return _status_kib("VmHWM") / 1024


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {key}")


def report_memory(args) -> None:
    print("\npeak resident memory of two training steps on the batch with the most frames, "
          "each side in its own process (MiB):")
    for side in [*RNNSEQ_SIDES, PEER]:
        command = [sys.executable, __file__, "--memory-child", side, "--steps", str(args.steps),
                   "--device", args.device, "--precision", args.precision]
        if args.threads:
            command += ["--threads", str(args.threads)]
        out = subprocess.run(command, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"the memory child of {side} failed:\n{out.stderr[-3000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"   {side:<26} before the step {result['before_mib']:8.1f}, peak "
              f"{result['peak_mib']:8.1f}, added by the step {result['peak_mib'] - result['before_mib']:7.1f}"
              f"  (batch {result['batch']})")


def endless_batches(datamodule):
    """Training batches, epoch after epoch, in the order of the config's seed."""
    while True:
        yield from datamodule.train_dataloader()


def side_transcripts(model, batches: list[Batch], device) -> list[str]:
    """Each side's beam search (beam 4, attention alone) with its own end rules: rnnseq's recipe
    settings (score / length, at most one token per encoder frame), SpeechBrain's defaults (its
    ``<eos>`` threshold 1.5, length normalisation, at most one token per encoder frame)."""
    hypotheses = []
    with torch.no_grad():
        if is_peer(model):
            searcher = model.searcher(4, 0, 0.0, fixed=False)
            tokenizer = model.tokenizer
            for batch in batches:
                ids, *_ = searcher(*model.encode(move_data_to_device(batch, device)))
                hypotheses += [tokenizer.decode([int(i) for i in h]) for h in ids]
        else:
            for batch in batches:
                hypotheses += model.beam_decode(model.transfer_batch_to_device(batch, device, 0))
    return hypotheses


def report_wer(sides: dict, datamodule, cfg, args, device) -> None:
    """Validation WER of each side after ``--minutes`` of training from the same initial state
    of its own model, one side after the other."""
    import jiwer

    validation = list(datamodule.val_dataloader())
    references = [text for batch in validation for text in batch.texts]
    print(f"\nvalidation WER after {args.minutes} minutes of training each (one side at a time; "
          f"{len(references)} validation utterances, beam 4):")
    for name in args.wer_sides.split(","):
        model = fresh(sides[name], cfg.seed).to(device).train()
        loss_of = loss_function(model, cfg, device, args.precision)
        step_time, losses = timed_training(loss_of, model.parameters(), endless_batches(datamodule),
                                           cfg, 10**9, 0, seconds=args.minutes * 60)
        model.eval()
        hypotheses = side_transcripts(model, validation, device)
        wer = jiwer.wer(references, hypotheses)
        cer = jiwer.cer(references, hypotheses)
        print(f"   {name:<26} {len(losses):5d} steps ({step_time:.3f} s each), last loss "
              f"{float(losses[-1]):.3f}; val WER {100 * wer:.2f} %, CER {100 * cer:.2f} %")


def settle_allocator() -> None:
    """Frees one block of just under 32 MiB, which raises glibc's threshold for serving large
    blocks from fresh pages (``mmap``, page faults on first touch) to its maximum. A training or
    evaluation process gets there with its first large batch; a benchmark that skipped it would
    time its first cases with page faults its later ones do not pay (SpeechBrain's beam search
    measured much slower per utterance-step when it ran first)."""
    block = torch.ones(8 * 2**20 - 2**12)  # float32: 32 MiB less 16 KiB
    del block


def main() -> None:
    settle_allocator()
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="training batches per run")
    parser.add_argument("--warmup", type=int, default=2, help="training steps left out of the timing")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--parts", default=",".join(DEFAULT_PARTS), help=f"any of {', '.join(PARTS)}")
    parser.add_argument("--decode-steps", type=int, default=30)
    parser.add_argument("--single", type=int, default=8, help="utterances decoded at batch 1")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--minutes", type=float, default=15.0, help="training time per side (wer)")
    parser.add_argument("--wer-sides", default=f"rnnseq (input feeding),{PEER}",
                        help="the sides the wer part trains, comma-separated")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    missing = speechbrain_missing()
    if missing:
        sys.exit(missing)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        sys.exit(f"unknown --parts {unknown}; known: {list(PARTS)}")
    if args.memory_child:
        peak_memory_child(args.memory_child, args)
        return

    import speechbrain

    device = torch.device(args.device)
    datamodule, sides, cfg = build_sides(args)
    print(f"machine: {machine()}; device {device}, {args.precision}")
    print(f"versions: torch {torch.__version__}, SpeechBrain {speechbrain.__version__}")
    if "params" in parts:
        report_parameters(sides)
    if "train" in parts:
        report_training(sides, training_batches(datamodule, args.steps), cfg, args, device)
    if "decode" in parts:
        report_decoding(sides, decoding_items(datamodule, args.decode_steps), args, device)
    if "memory" in parts:
        report_memory(args)
    if "wer" in parts:
        report_wer(sides, datamodule, cfg, args, device)


if __name__ == "__main__":
    main()
