"""What the encoder-decoder tasks share (speech-to-text, text-to-text): attention (and optional
CTC) training, greedy decoding in validation, beam search (with optional language-model shallow
fusion) in test, and corpus-level scores over whole splits."""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F

from rnnseq import metrics as M
from rnnseq.data.batching import Batch
from rnnseq.data.tokenizer import Tokenizer
from rnnseq.decoding.ctc_greedy import ctc_greedy_search
from rnnseq.decoding.lm_fusion import LMFusion
from rnnseq.decoding.scorers import build_scorers, scorer_sources
from rnnseq.decoding.search import Hypothesis, greedy_search, max_decode_lengths, scorer_beam_search
from rnnseq.decoding.settings import DECODING_KEYS, DecodingSettings, check_decoding, not_applicable_in
from rnnseq.models.guided_attention import guided_attention_loss
from rnnseq.models.seq2seq import Encoded, Seq2Seq
from rnnseq.tasks.base import Task, gather_rows
from rnnseq.tasks.scheduled_sampling import check_scheduled_sampling, sampling_probability

# Hypotheses one beam search holds: a batch of utterances x beam_size above it is searched in
# slices of utterances, so a wide beam does not raise the peak memory of a test batch.
BEAM_ROWS = 128
GUIDED_ATTENTION_KEYS = ("weight", "sigma", "anneal_steps")


def check_guided_attention(settings: dict | None) -> dict:
    """The ``task.guided_attention`` settings with defaults filled in; unknown keys or values out
    of range are a ``ValueError`` naming the key.

    ``weight`` scales the guided attention loss (0: off), ``sigma`` is the width of the diagonal
    band (:func:`~rnnseq.models.guided_attention.guided_attention_loss`), and ``anneal_steps``
    lowers the weight linearly to 0 over that many training steps (null: constant).
    """
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(GUIDED_ATTENTION_KEYS))
    if unknown:
        raise ValueError(f"unknown task.guided_attention settings {unknown}; known: "
                         f"{list(GUIDED_ATTENTION_KEYS)}")
    checked = {"weight": 0.0, "sigma": 0.4, "anneal_steps": None, **settings}
    if checked["weight"] < 0:
        raise ValueError(f"task.guided_attention.weight must be >= 0, got {checked['weight']}")
    if checked["sigma"] <= 0:
        raise ValueError(f"task.guided_attention.sigma must be > 0, got {checked['sigma']}")
    if checked["anneal_steps"] is not None and checked["anneal_steps"] <= 0:
        raise ValueError(f"task.guided_attention.anneal_steps must be > 0 or null, got "
                         f"{checked['anneal_steps']}")
    return checked


def guided_attention_weight(settings: dict, step: int) -> float:
    """The guided attention loss weight at training step ``step`` (linear decay to 0 over
    ``anneal_steps`` when it is set)."""
    weight, anneal = settings["weight"], settings["anneal_steps"]
    if anneal is None:
        return weight
    return weight * max(0.0, 1.0 - step / anneal)


class Seq2SeqTask(Task):
    """Base of the encoder-decoder tasks.

    Subclasses set ``self.tokenizer`` (the target side) and ``self.model`` (a
    :class:`~rnnseq.models.seq2seq.Seq2Seq`), save ``ctc_weight``, ``label_smoothing`` and
    ``decoding`` (and optionally ``guided_attention``, see :func:`check_guided_attention`) in
    their hyper-parameters, and implement :meth:`encode` and :meth:`score`.

    ``decoding`` holds ``mode`` (:data:`~rnnseq.decoding.settings.DECODING_MODES`: ``beam``, the
    default; ``greedy``, attention greedy; ``ctc_greedy``, the CTC head's best path; ``ctc_beam``,
    CTC prefix beam search without the attention decoder), the search settings (``beam_size``,
    ``length_penalty``, ``max_length_ratio`` and ``min_length_ratio`` in output tokens per
    encoder step, ``eos_threshold``, ``pre_beam``, ``nbest``) and the scorer weights
    (``ctc_weight`` for joint CTC/attention scoring, ``lm`` with ``lm_weight`` for shallow
    fusion, ``length_bonus``, ``coverage_weight`` with ``coverage_kind`` and
    ``coverage_threshold``); ``rnnseq/conf/task/speech_to_text.yaml`` explains each.
    :meth:`set_decoding` changes them, refusing settings that could not apply; :attr:`decoding`
    reads them as one typed object (:class:`~rnnseq.decoding.settings.DecodingSettings`).
    """

    tokenizer: Tokenizer
    model: Seq2Seq
    PROGRESS_BAR_METRICS: tuple[str, ...] = ()  # shown in the progress bar

    def __init__(self):
        super().__init__()
        self._references: list[str] = []
        self._hypotheses: list[str] = []
        self._ids: list[str] = []
        self.test_results: list[dict] = []
        self._nbest: list[list[dict]] = []  # per item with decoding.nbest > 1
        self._fusion: LMFusion | None = None

    # -- to be provided by each task ------------------------------------------------------------
    def encode(self, batch: Batch) -> Encoded:
        """Encoder memory of a batch."""
        raise NotImplementedError

    def score(self, references: list[str], hypotheses: list[str], split: str) -> dict[str, float]:
        """Metric name -> value over a whole split (``val``, ``test`` or an extra test split
        such as ``test_voices``)."""
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
        """``{"loss", "att"}`` (and ``"ctc"`` with a CTC head, ``"guided"`` with guided attention
        in training) for a batch; ``enc`` reuses an encoder pass."""
        enc = self.encode(batch) if enc is None else enc
        decoder_input, target = self._decoder_io(batch)
        sampling = (sampling_probability(self.scheduled_sampling, self.global_step)
                    if self.training else 0.0)
        logits, weights = self.model.decoder(enc.memory, enc.mask, decoder_input,
                                             sampling_probability=sampling)  # (B, T + 1, V)
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
        guide = self.guided_attention
        guide_weight = guided_attention_weight(guide, self.global_step) if self.training else 0.0
        if guide_weight > 0:  # training only, so that val/loss stays comparable across recipes
            losses["guided"] = guided_attention_loss(weights, batch.target_lengths + 1, enc.lengths,
                                                     guide["sigma"])
            losses["loss"] = losses["loss"] + guide_weight * losses["guided"]
        return losses

    @functools.cached_property
    def scheduled_sampling(self) -> dict:
        """The checked ``scheduled_sampling`` settings (off when none are given)."""
        return check_scheduled_sampling(self.hparams.get("scheduled_sampling"))

    @functools.cached_property
    def guided_attention(self) -> dict:
        """The checked ``guided_attention`` settings (off when none are given), checked once
        rather than at every step."""
        return check_guided_attention(self.hparams.get("guided_attention"))

    def training_loss(self, batch: Batch) -> torch.Tensor:
        losses = self.compute_losses(batch)
        b = batch.targets.shape[0]
        self.log(M.TRAIN_LOSS, losses["loss"], batch_size=b)  # shown by callbacks.ProgressBar
        self.log(M.TRAIN_ATTENTION_LOSS, losses["att"], batch_size=b)
        if "ctc" in losses:
            self.log(M.TRAIN_CTC_LOSS, losses["ctc"], batch_size=b)
        if "guided" in losses:
            self.log(M.TRAIN_GUIDED_ATTENTION_LOSS, losses["guided"], batch_size=b)
        return losses["loss"]

    def unalignable(self, input_lengths: list[int], targets: list[list[int]]) -> dict[int, str]:
        """Pairs that CTC cannot align (only with a CTC head and ``ctc_weight > 0``): a CTC path
        needs one encoder frame per target token plus one blank between repeated tokens, and the
        encoder's subsampling decides how many frames there are. (CTC's ``zero_infinity`` would
        otherwise zero their loss without a word.)"""
        if self.model.ctc_head is None or not self.hparams.ctc_weight:
            return {}
        # host: a check of the data before training, on a model not yet moved
        frames = self.model.encoder.output_lengths(torch.tensor(input_lengths, dtype=torch.long))
        problems = {}
        for i, (available, tokens) in enumerate(zip(frames.tolist(), targets)):
            repeats = sum(a == b for a, b in zip(tokens, tokens[1:]))
            needed = len(tokens) + repeats
            if available < needed:
                problems[i] = (f"CTC cannot align it: {len(tokens)} target tokens ({repeats} "
                               f"repeated) need {needed} encoder frames, the encoder gives "
                               f"{available} from {input_lengths[i]} input steps")
        return problems

    # -- decoding settings ----------------------------------------------------------------------
    def set_decoding(self, changes: dict | None = None) -> None:
        """Applies ``changes`` to ``hparams.decoding`` (after checking them) and checks the
        result: unknown keys, and settings that could not apply, are a ``ValueError`` naming the
        key and what to do."""
        decoding = self.hparams.decoding
        changes = dict(changes or {})
        unknown = sorted(set(changes) - set(DECODING_KEYS))
        if unknown:
            raise ValueError(f"unknown decoding settings {unknown}; known: {sorted(DECODING_KEYS)}")
        if "mode" in changes:  # the run's own beam settings give way to a new mode
            changes = {**not_applicable_in(changes["mode"], decoding, keep=changes), **changes}
        merged = {**decoding, **changes}
        check_decoding(merged, has_ctc=self.model.ctc_head is not None)
        decoding.update(changes)

    @contextlib.contextmanager
    def decoding_changed(self, changes: dict):
        """Inside the block, the decoding settings with ``changes`` (checked as
        :meth:`set_decoding` checks them); after it, the settings as they were. Yields
        :attr:`decoding`."""
        kept = dict(self.hparams.decoding)
        try:
            self.set_decoding(changes)
            yield self.decoding
        finally:
            self.hparams.decoding.clear()
            self.hparams.decoding.update(kept)

    @property
    def decoding(self) -> DecodingSettings:
        """The decoding settings (``hparams.decoding``, checked by :meth:`set_decoding`) as one
        typed object."""
        return DecodingSettings.from_mapping(self.hparams.decoding)

    # -- decoding -------------------------------------------------------------------------------
    def _max_lengths(self, memory_lengths: torch.Tensor) -> torch.Tensor:
        return max_decode_lengths(memory_lengths, self.decoding.max_length_ratio)

    @torch.no_grad()
    def greedy_hypotheses(self, batch: Batch, return_attention: bool = False,
                          enc: Encoded | None = None):
        """Greedy hypotheses (token ids and scores) of a batch, and ``(B, T, S')`` attention
        weights if asked."""
        enc = self.encode(batch) if enc is None else enc
        return greedy_search(self.model.decoder, enc.memory, enc.mask,
                             self._max_lengths(enc.lengths), self.tokenizer.eos_id,
                             return_attention=return_attention)

    @torch.no_grad()
    def greedy_decode(self, batch: Batch, return_attention: bool = False,
                      enc: Encoded | None = None):
        """Greedy outputs of a batch as text, and ``(B, T, S')`` attention weights if asked."""
        hyps, attention = self.greedy_hypotheses(batch, return_attention, enc)
        return [self.tokenizer.decode(h.tokens) for h in hyps], attention

    def fusion(self) -> LMFusion | None:
        """The shallow-fusion language model named by ``decoding.lm`` (loaded once), or None."""
        path = self.decoding.lm
        if not path:
            return None
        if self._fusion is None:
            from rnnseq.checkpoints import load_task
            from rnnseq.tasks.language_model import LanguageModel

            lm = load_task(LanguageModel, path, str(self.device))
            self._fusion = LMFusion(lm.model, lm.tokenizer, self.tokenizer)
        if self._fusion.index.device != self.device:
            self._fusion.to(self.device)
        return self._fusion

    @torch.no_grad()
    def decode(self, batch: Batch) -> list[str]:
        """Outputs of a batch with the ``decoding`` settings (``decoding.mode``)."""
        mode = self.decoding.mode
        if mode == "greedy":
            return self.greedy_decode(batch)[0]
        if mode == "ctc_greedy":
            enc = self.encode(batch)
            hyps = ctc_greedy_search(self.model.ctc_log_probs(enc.memory), enc.lengths,
                                     self.tokenizer.blank_id)
            return [self.tokenizer.decode(h.tokens) for h in hyps]
        return self.beam_decode(batch)

    @torch.no_grad()
    def beam_decode(self, batch: Batch) -> list[str]:
        """Beam-search outputs of a batch (``decoding.mode=beam`` or ``ctc_beam``)."""
        return self.best_texts(self.beam_hypotheses(batch))

    def best_texts(self, nbest: list[list[Hypothesis]]) -> list[str]:
        """The text of each utterance's best hypothesis (empty where none ended)."""
        return [self.tokenizer.decode(hyps[0].tokens) if hyps else "" for hyps in nbest]

    @torch.no_grad()
    def beam_hypotheses(self, batch: Batch, enc: Encoded | None = None) -> list[list[Hypothesis]]:
        """The ``decoding.nbest`` best hypotheses of every utterance of a batch, best first.

        The scorers come from the ``decoding`` weights (:func:`~rnnseq.decoding.scorers.
        build_scorers`): the attention decoder (left out by ``decoding.mode=ctc_beam``), CTC
        prefix scores, the fusion language model, a length bonus, coverage.
        """
        enc = self.encode(batch) if enc is None else enc
        settings = self.decoding
        per_search = max(1, BEAM_ROWS // settings.beam_size)
        if enc.memory.shape[0] > per_search:  # each utterance's search is its own
            return [item for start in range(0, enc.memory.shape[0], per_search)
                    for item in self.beam_hypotheses(None, enc.rows(start, start + per_search))]
        sources = scorer_sources(
            None if settings.mode == "ctc_beam" else self.model.decoder, enc.memory, enc.mask,
            self.model.decoder.vocab_size, self.tokenizer.blank_id, self.tokenizer.eos_id,
            ctc_log_probs=self.model.ctc_log_probs(enc.memory) if settings.uses_ctc else None,
            memory_lengths=enc.lengths, lm=self.fusion())
        scorers = build_scorers(self.hparams.decoding, sources)
        return scorer_beam_search(scorers, enc.memory.shape[0], self.model.decoder.vocab_size,
                    self._max_lengths(enc.lengths), self.tokenizer.eos_id,
                    beam_size=settings.beam_size, length_penalty=settings.length_penalty,
                    min_lengths=torch.floor(enc.lengths.float() * settings.min_length_ratio).long(),
                    eos_threshold=settings.eos_threshold, pre_beam=settings.candidates,
                    nbest=settings.nbest, device=enc.memory.device)

    # -- evaluation -----------------------------------------------------------------------------
    def evaluation_step(self, batch: Batch, split: str) -> None:
        """Validation decodes greedily (and logs the loss); test splits use beam search."""
        if split != "val" and self.decoding.beam_search:
            nbest = self.beam_hypotheses(batch)
            hyps = self.best_texts(nbest)
            if self.decoding.nbest > 1:
                self._nbest.extend([{"hypothesis": self.tokenizer.decode(h.tokens),
                                     "score": round(h.score, 4)} for h in item] for item in nbest)
        elif split != "val":
            hyps = self.decode(batch)
        else:
            enc = self.encode(batch)  # one encoder pass serves the loss and the outputs
            b = len(batch.ids)
            self.accumulate(loss=self.compute_losses(batch, enc)["loss"] * b, items=b)
            hyps = self.greedy_decode(batch, enc=enc)[0]
        self._references.extend(batch.texts)
        self._hypotheses.extend(hyps)
        self._ids.extend(batch.ids)

    def start_evaluation(self, split: str) -> None:
        self._references, self._hypotheses, self._ids, self._nbest = [], [], [], []

    def _gather_collected(self) -> None:
        """Under distributed training each rank decoded its own share of the split; corpus-level
        scores need all of it, so every rank receives every rank's outputs."""
        nbest = self._nbest or [None] * len(self._ids)
        rows = gather_rows(list(zip(self._ids, self._references, self._hypotheses, nbest)))
        self._ids = [r[0] for r in rows]
        self._references = [r[1] for r in rows]
        self._hypotheses = [r[2] for r in rows]
        self._nbest = [r[3] for r in rows] if self._nbest else []

    def end_evaluation(self, split: str) -> None:
        if split == "val":
            self.log(M.VAL_LOSS, self.mean_loss(), prog_bar=True)
        self._gather_collected()
        for name, value in self.score(self._references, self._hypotheses, split).items():
            self.log(name, value, prog_bar=name in self.PROGRESS_BAR_METRICS)
        if split != "val":
            self.test_results = [
                {"id": i, "reference": r, "hypothesis": h}
                for i, r, h in zip(self._ids, self._references, self._hypotheses)
            ]
            for item, nbest in zip(self.test_results, self._nbest):
                item["nbest"] = nbest
