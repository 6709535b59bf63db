"""Speech-to-text as a LightningModule: joint CTC/attention training, greedy decoding in
validation, beam search in test, corpus-level WER/CER."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rnnseq import metrics as M
from rnnseq.data.audio import FeatureNormalizer, SpecAugment
from rnnseq.data.batching import Batch, make_pad_mask
from rnnseq.data.tokenizer import CharTokenizer
from rnnseq.decoding.search import beam_search, greedy_search, max_decode_lengths
from rnnseq.models.seq2seq import Encoded, build_seq2seq


def _plain(value: Any) -> Any:
    """Hydra configs become plain dicts and lists, so checkpoints hold no OmegaConf objects."""
    if isinstance(value, DictConfig) or OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    return value


class SpeechToText(L.LightningModule):
    """Joint CTC/attention speech recogniser.

    Everything needed to rebuild the model is stored in its hyper-parameters (the model config,
    the symbol table and the feature settings), and the feature statistics are buffers, so
    ``SpeechToText.load_from_checkpoint(path)`` works without the corpus.

    Args:
        model: the ``model`` config group (``encoder``, ``decoder``, ``attention`` partials).
        vocabulary: the tokenizer's symbols (from the datamodule).
        features: the feature settings (from the datamodule).
        optimizer: a Hydra ``_partial_`` optimizer config.
        scheduler: a Hydra ``_partial_`` scheduler config plus ``interval`` and optional
            ``monitor``; ``None`` keeps the learning rate constant.
        ctc_weight: ``loss = (1 - w) * attention + w * ctc``; 0 removes the CTC head.
        label_smoothing: of the attention decoder's cross-entropy.
        spec_augment: :class:`~rnnseq.data.audio.SpecAugment` arguments, or ``None``.
        decoding: ``max_length_ratio`` (tokens per encoder frame), ``beam_size``,
            ``length_penalty`` and ``ctc_weight`` (joint CTC/attention scoring) for test-time
            beam search.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        vocabulary: list[str],
        features: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        ctc_weight: float = 0.3,
        label_smoothing: float = 0.1,
        spec_augment: Mapping[str, Any] | None = None,
        decoding: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"task.ctc_weight must be in [0, 1], got {ctc_weight}")
        self.save_hyperparameters({
            "model": _plain(model), "vocabulary": list(vocabulary), "features": _plain(features),
            "optimizer": _plain(optimizer), "scheduler": _plain(scheduler),
            "ctc_weight": ctc_weight, "label_smoothing": label_smoothing,
            "spec_augment": _plain(spec_augment), "decoding": _plain(decoding) or {},
        })
        self.tokenizer = CharTokenizer(vocabulary)
        input_dim = int(self.hparams.features["n_mels"])
        self.model = build_seq2seq(self.hparams.model, input_dim, len(self.tokenizer),
                                   ctc=ctc_weight > 0)
        self.normalizer = FeatureNormalizer(input_dim)
        self.spec_augment = SpecAugment(**spec_augment) if spec_augment else None
        self._references: list[str] = []
        self._hypotheses: list[str] = []
        self._ids: list[str] = []
        self.test_results: list[dict] = []

    # -- shared pieces --------------------------------------------------------------------------
    def prepare_features(self, batch: Batch) -> torch.Tensor:
        """Normalised (and, in training, SpecAugment-ed) ``(B, S, F)`` features."""
        mask = make_pad_mask(batch.feature_lengths, batch.features.shape[1])
        features = self.normalizer(batch.features, mask)
        if self.spec_augment is not None and self.training:
            features = self.spec_augment(features) * mask.unsqueeze(-1)
        return features

    def _decoder_io(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``<eos> y`` as decoder input and ``y <eos>`` as its target, both ``(B, T + 1)``."""
        eos, pad = self.tokenizer.eos_id, self.tokenizer.pad_id
        b = batch.targets.shape[0]
        start = batch.targets.new_full((b, 1), eos)
        decoder_input = torch.cat([start, batch.targets], dim=1)
        target = torch.cat([batch.targets, batch.targets.new_full((b, 1), pad)], dim=1)
        target.scatter_(1, batch.target_lengths.unsqueeze(1), eos)  # <eos> right after each text
        return decoder_input, target

    def encode(self, batch: Batch) -> Encoded:
        """Encoder memory of a batch (features normalised, augmented in training)."""
        return self.model.encode(self.prepare_features(batch), batch.feature_lengths)

    def compute_losses(self, batch: Batch, enc: Encoded | None = None) -> dict[str, torch.Tensor]:
        """``{"loss", "att", "ctc"}`` for a batch; ``enc`` reuses an encoder pass."""
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

    def _max_lengths(self, memory_lengths: torch.Tensor) -> torch.Tensor:
        return max_decode_lengths(memory_lengths, self.hparams.decoding.get("max_length_ratio", 1.0))

    @torch.no_grad()
    def greedy_decode(self, batch: Batch, return_attention: bool = False,
                      enc: Encoded | None = None):
        """Greedy transcripts of a batch, and ``(B, T, S')`` attention weights if asked."""
        enc = self.encode(batch) if enc is None else enc
        hyps, attention = greedy_search(self.model.decoder, enc.memory, enc.mask,
                                        self._max_lengths(enc.lengths), self.tokenizer.eos_id,
                                        return_attention=return_attention)
        return [self.tokenizer.decode(h.tokens) for h in hyps], attention

    @torch.no_grad()
    def beam_decode(self, batch: Batch) -> list[str]:
        """Beam-search transcripts of a batch (``decoding.beam_size``, ``length_penalty`` and
        ``ctc_weight`` for joint CTC/attention scoring)."""
        enc = self.encode(batch)
        decoding = self.hparams.decoding
        ctc_weight = decoding.get("ctc_weight", 0.0) if self.model.ctc_head is not None else 0.0
        hyps = beam_search(self.model.decoder, enc.memory, enc.mask,
                           self._max_lengths(enc.lengths), self.tokenizer.eos_id,
                           beam_size=decoding.get("beam_size", 4),
                           length_penalty=decoding.get("length_penalty", 1.0),
                           ctc_log_probs=self.model.ctc_log_probs(enc.memory) if ctc_weight else None,
                           ctc_weight=ctc_weight, blank_id=self.tokenizer.blank_id)
        return [self.tokenizer.decode(h.tokens) for h in hyps]

    # -- Lightning hooks ------------------------------------------------------------------------
    def training_step(self, batch: Batch | None, batch_idx: int):
        if batch is None:  # every utterance of the batch failed to load (reported by the dataset)
            return None
        losses = self.compute_losses(batch)
        b = batch.targets.shape[0]
        self.log(M.TRAIN_LOSS, losses["loss"], prog_bar=True, batch_size=b)
        self.log(M.TRAIN_ATTENTION_LOSS, losses["att"], batch_size=b)
        if "ctc" in losses:
            self.log(M.TRAIN_CTC_LOSS, losses["ctc"], batch_size=b)
        return losses["loss"]

    def on_before_optimizer_step(self, optimizer) -> None:
        # Only on logging steps: a norm over every parameter each step would cost time for nothing.
        if self.trainer.global_step % self.trainer.log_every_n_steps == 0:
            grads = [p.grad.detach().norm() for p in self.parameters() if p.grad is not None]
            if grads:
                self.log(M.GRAD_NORM, torch.stack(grads).norm(), on_step=True, on_epoch=False)
            self.log(M.LEARNING_RATE, optimizer.param_groups[0]["lr"], on_step=True, on_epoch=False)

    def _evaluation_step(self, batch: Batch | None, beam: bool) -> None:
        if batch is None:
            return
        if beam:
            hyps = self.beam_decode(batch)
        else:
            enc = self.encode(batch)  # one encoder pass serves the loss and the transcripts
            self.log(M.VAL_LOSS, self.compute_losses(batch, enc)["loss"],
                     batch_size=len(batch.ids), prog_bar=True)
            hyps = self.greedy_decode(batch, enc=enc)[0]
        self._references.extend(batch.texts)
        self._hypotheses.extend(hyps)
        self._ids.extend(batch.ids)

    def _reset_collected(self) -> None:
        self._references, self._hypotheses, self._ids = [], [], []

    def on_validation_epoch_start(self) -> None:
        self._reset_collected()

    def validation_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._evaluation_step(batch, beam=False)

    def on_validation_epoch_end(self) -> None:
        rates = M.error_rates(self._references, self._hypotheses)
        self.log(M.VAL_WER, rates.wer, prog_bar=True)
        self.log(M.VAL_CER, rates.cer, prog_bar=True)

    def on_test_epoch_start(self) -> None:
        self._reset_collected()

    def test_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._evaluation_step(batch, beam=True)

    def on_test_epoch_end(self) -> None:
        rates = M.error_rates(self._references, self._hypotheses)
        self.log(M.TEST_WER, rates.wer)
        self.log(M.TEST_CER, rates.cer)
        self.test_results = [
            {"id": i, "reference": r, "hypothesis": h}
            for i, r, h in zip(self._ids, self._references, self._hypotheses)
        ]

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        monitor = config.pop("monitor", None)
        factory = instantiate(config)  # a partial: the optimizer (and run length) come from here
        kwargs = {}
        if "total_steps" in inspect.signature(factory).parameters:
            kwargs["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = {"scheduler": factory(optimizer, **kwargs), "interval": interval}
        if monitor:
            scheduler["monitor"] = monitor
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
