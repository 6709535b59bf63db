"""What the encoder-decoder tasks share (speech-to-text, text-to-text): attention (and optional
CTC) training, greedy decoding in validation, beam search (with optional language-model shallow
fusion) in test, and corpus-level scores over whole splits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rnnseq import metrics as M
from rnnseq.data.batching import Batch
from rnnseq.data.tokenizer import Tokenizer
from rnnseq.decoding.lm_fusion import LMFusion
from rnnseq.decoding.search import beam_search, greedy_search, max_decode_lengths
from rnnseq.models.seq2seq import Encoded, Seq2Seq
from rnnseq.tasks.base import Task, gather_rows


class Seq2SeqTask(Task):
    """Base of the encoder-decoder tasks.

    Subclasses set ``self.tokenizer`` (the target side) and ``self.model`` (a
    :class:`~rnnseq.models.seq2seq.Seq2Seq`), save ``ctc_weight``, ``label_smoothing`` and
    ``decoding`` in their hyper-parameters, and implement :meth:`encode` and :meth:`score`.

    ``decoding`` holds ``max_length_ratio`` (most output tokens per encoder step), ``beam_size``,
    ``length_penalty``, ``ctc_weight`` (joint CTC/attention scoring), and ``lm`` (a language-model
    run folder or checkpoint for shallow fusion) with ``lm_weight``.
    """

    tokenizer: Tokenizer
    model: Seq2Seq
    VALIDATION_METRICS: tuple[str, ...] = ()  # shown in the progress bar

    def __init__(self):
        super().__init__()
        self._references: list[str] = []
        self._hypotheses: list[str] = []
        self._ids: list[str] = []
        self.test_results: list[dict] = []
        self._fusion: LMFusion | None = None

    # -- to be provided by each task ------------------------------------------------------------
    def encode(self, batch: Batch) -> Encoded:
        """Encoder memory of a batch."""
        raise NotImplementedError

    def score(self, references: list[str], hypotheses: list[str], split: str) -> dict[str, float]:
        """Metric name -> value over a whole split (``split`` is ``val`` or ``test``)."""
        raise NotImplementedError

    # -- training -------------------------------------------------------------------------------
    def _decoder_io(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``<eos> y`` as decoder input and ``y <eos>`` as its target, both ``(B, T + 1)``."""
        eos, pad = self.tokenizer.eos_id, self.tokenizer.pad_id
        b = batch.targets.shape[0]
        start = batch.targets.new_full((b, 1), eos)
        decoder_input = torch.cat([start, batch.targets], dim=1)
        target = torch.cat([batch.targets, batch.targets.new_full((b, 1), pad)], dim=1)
        target.scatter_(1, batch.target_lengths.unsqueeze(1), eos)  # <eos> right after each text
        return decoder_input, target

    def compute_losses(self, batch: Batch, enc: Encoded | None = None) -> dict[str, torch.Tensor]:
        """``{"loss", "att"}`` (and ``"ctc"`` with a CTC head) for a batch; ``enc`` reuses an
        encoder pass."""
        enc = self.encode(batch) if enc is None else enc
        decoder_input, target = self._decoder_io(batch)
        logits, _ = self.model.decoder(enc.memory, enc.mask, decoder_input)  # (B, T + 1, V)
        attention_loss = F.cross_entropy(
            logits.float().transpose(1, 2), target, ignore_index=self.tokenizer.pad_id,
            label_smoothing=self.hparams.label_smoothing,
        )
        losses = {"att": attention_loss, "loss": attention_loss}
        if self.model.ctc_head is not None:
            ctc_loss = F.ctc_loss(
                self.model.ctc_log_probs(enc.memory).transpose(0, 1), batch.targets, enc.lengths,
                batch.target_lengths, blank=self.tokenizer.blank_id, reduction="mean",
                zero_infinity=True,
            )
            w = self.hparams.ctc_weight
            losses["ctc"] = ctc_loss
            losses["loss"] = (1 - w) * attention_loss + w * ctc_loss
        return losses

    def training_step(self, batch: Batch | None, batch_idx: int):
        if batch is None:  # every item of the batch failed to load (reported by the dataset)
            return None
        losses = self.compute_losses(batch)
        b = batch.targets.shape[0]
        self.log(M.TRAIN_LOSS, losses["loss"], batch_size=b)  # shown by callbacks.ProgressBar
        self.log(M.TRAIN_ATTENTION_LOSS, losses["att"], batch_size=b)
        if "ctc" in losses:
            self.log(M.TRAIN_CTC_LOSS, losses["ctc"], batch_size=b)
        return losses["loss"]

    # -- decoding -------------------------------------------------------------------------------
    def _max_lengths(self, memory_lengths: torch.Tensor) -> torch.Tensor:
        return max_decode_lengths(memory_lengths, self.hparams.decoding.get("max_length_ratio", 1.0))

    @torch.no_grad()
    def greedy_decode(self, batch: Batch, return_attention: bool = False,
                      enc: Encoded | None = None):
        """Greedy outputs of a batch, and ``(B, T, S')`` attention weights if asked."""
        enc = self.encode(batch) if enc is None else enc
        hyps, attention = greedy_search(self.model.decoder, enc.memory, enc.mask,
                                        self._max_lengths(enc.lengths), self.tokenizer.eos_id,
                                        return_attention=return_attention)
        return [self.tokenizer.decode(h.tokens) for h in hyps], attention

    def fusion(self) -> LMFusion | None:
        """The shallow-fusion language model named by ``decoding.lm`` (loaded once), or None."""
        decoding = self.hparams.decoding
        if not decoding.get("lm"):
            return None
        if self._fusion is None:
            self._fusion = LMFusion.from_checkpoint(decoding["lm"], self.tokenizer)
        if self._fusion.index.device != self.device:
            self._fusion.to(self.device)
        return self._fusion

    @torch.no_grad()
    def beam_decode(self, batch: Batch) -> list[str]:
        """Beam-search outputs of a batch with the ``decoding`` settings."""
        enc = self.encode(batch)
        decoding = self.hparams.decoding
        ctc_weight = decoding.get("ctc_weight", 0.0) if self.model.ctc_head is not None else 0.0
        hyps = beam_search(self.model.decoder, enc.memory, enc.mask,
                           self._max_lengths(enc.lengths), self.tokenizer.eos_id,
                           beam_size=decoding.get("beam_size", 4),
                           length_penalty=decoding.get("length_penalty", 1.0),
                           ctc_log_probs=self.model.ctc_log_probs(enc.memory) if ctc_weight else None,
                           ctc_weight=ctc_weight, blank_id=self.tokenizer.blank_id,
                           lm=self.fusion(), lm_weight=decoding.get("lm_weight", 0.0))
        return [self.tokenizer.decode(h.tokens) for h in hyps]

    # -- evaluation -----------------------------------------------------------------------------
    def evaluation_step(self, batch: Batch | None, split: str) -> None:
        """Validation decodes greedily (and logs the loss); the test uses beam search."""
        if batch is None:
            return
        if split == "test":
            hyps = self.beam_decode(batch)
        else:
            enc = self.encode(batch)  # one encoder pass serves the loss and the outputs
            self.log(M.VAL_LOSS, self.compute_losses(batch, enc)["loss"],
                     batch_size=len(batch.ids), prog_bar=True, sync_dist=True)
            hyps = self.greedy_decode(batch, enc=enc)[0]
        self._references.extend(batch.texts)
        self._hypotheses.extend(hyps)
        self._ids.extend(batch.ids)

    def start_evaluation(self, split: str) -> None:
        self._references, self._hypotheses, self._ids = [], [], []

    def _gather_collected(self) -> None:
        """Under distributed training each rank decoded its own share of the split; corpus-level
        scores need all of it, so every rank receives every rank's outputs."""
        rows = gather_rows(list(zip(self._ids, self._references, self._hypotheses)))
        self._ids = [r[0] for r in rows]
        self._references = [r[1] for r in rows]
        self._hypotheses = [r[2] for r in rows]

    def end_evaluation(self, split: str) -> None:
        self._gather_collected()
        for name, value in self.score(self._references, self._hypotheses, split).items():
            self.log(name, value, prog_bar=name in self.VALIDATION_METRICS)
        if split == "test":
            self.test_results = [
                {"id": i, "reference": r, "hypothesis": h}
                for i, r, h in zip(self._ids, self._references, self._hypotheses)
            ]
