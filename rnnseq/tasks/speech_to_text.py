"""Speech-to-text as a LightningModule: joint CTC/attention training, greedy decoding in
validation, beam search in test, corpus-level WER/CER."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from rnnseq import metrics as M
from rnnseq.data.batching import Batch
from rnnseq.data.tokenizer import CharTokenizer, tokenizer_from_state
from rnnseq.models.seq2seq import Encoded, build_seq2seq
from rnnseq.tasks.base import to_plain
from rnnseq.tasks.scheduled_sampling import check_scheduled_sampling
from rnnseq.tasks.seq2seq import Seq2SeqTask, check_guided_attention
from rnnseq.tasks.speech_input import SpeechInput


class SpeechToText(SpeechInput, Seq2SeqTask):
    """Joint CTC/attention speech recogniser.

    Everything needed to rebuild the model is stored in its hyper-parameters (the model config,
    the symbol table and the feature settings), and the feature statistics are buffers, so
    ``SpeechToText.load_from_checkpoint(path)`` works without the corpus.

    Args:
        model: the ``model`` config group (``encoder``, ``decoder``, ``attention`` partials).
        vocabulary: the tokenizer's symbols (from the datamodule).
        tokenizer: a subword tokenizer's saved state (from the datamodule, with
            ``data.tokenizer.kind=bpe`` or ``unigram``); ``None``: characters (``vocabulary``).
        features: the feature settings (from the datamodule).
        optimizer: a Hydra ``_partial_`` optimizer config.
        scheduler: a Hydra ``_partial_`` scheduler config plus ``interval`` and optional
            ``monitor``; ``None`` keeps the learning rate constant.
        ctc_weight: ``loss = (1 - w) * attention + w * ctc``; 0 removes the CTC head.
        label_smoothing: of the attention decoder's cross-entropy.
        spec_augment: :class:`~rnnseq.data.audio.SpecAugment` arguments, or ``None``.
        normalizer: the transcript normaliser of the training data (:mod:`rnnseq.data.normalize`),
            applied by ``rnnseq.evaluate`` to the references it scores.
        decoding: test-time beam search settings (see
            :class:`~rnnseq.tasks.seq2seq.Seq2SeqTask`), shallow fusion with a character
            language model (``lm``, ``lm_weight``) included.
        guided_attention: ``weight``, ``sigma``, ``anneal_steps`` of a guided attention loss
            in training (:func:`~rnnseq.tasks.seq2seq.check_guided_attention`); ``None``: off.
        scheduled_sampling: ``probability``, ``schedule``, ``ramp_steps``
            (:mod:`rnnseq.tasks.scheduled_sampling`); ``None``: off (teacher forcing).
        utterance_mean: after the training split's normalisation, remove each utterance's own
            mean per mel bin (:class:`~rnnseq.data.audio.FeatureNormalizer`).
    """

    MONITOR = M.VAL_WER
    VALIDATION_LOGGED = (M.VAL_LOSS, M.VAL_WER, M.VAL_CER)
    PROGRESS_BAR_METRICS = (M.VAL_WER, M.VAL_CER)

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
        normalizer: str = "letters",
        guided_attention: Mapping[str, Any] | None = None,
        utterance_mean: bool = False,
        tokenizer: Mapping[str, Any] | None = None,
        scheduled_sampling: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self._host: dict[str, Any] = {}  # host-side helpers (see waves_batch), not submodules
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"task.ctc_weight must be in [0, 1], got {ctc_weight}")
        self.save_hyperparameters({
            "model": to_plain(model), "vocabulary": list(vocabulary), "features": to_plain(features),
            "optimizer": to_plain(optimizer), "scheduler": to_plain(scheduler),
            "ctc_weight": ctc_weight, "label_smoothing": label_smoothing,
            "spec_augment": to_plain(spec_augment), "normalizer": normalizer,
            "decoding": to_plain(decoding) or {},
            "guided_attention": check_guided_attention(to_plain(guided_attention)),
            "scheduled_sampling": check_scheduled_sampling(to_plain(scheduled_sampling)),
            "utterance_mean": bool(utterance_mean),
            # only subword models carry one: a character model's symbols are its vocabulary
            **({"tokenizer": to_plain(tokenizer)} if tokenizer else {}),
        })
        self.tokenizer = tokenizer_from_state(tokenizer) if tokenizer else CharTokenizer(vocabulary)
        input_dim = int(self.hparams.features["n_mels"])
        self.model = build_seq2seq(self.hparams.model, input_dim, len(self.tokenizer),
                                   ctc=ctc_weight > 0)
        self.set_decoding()  # refuses decoding settings that cannot apply to this model
        self.init_speech_input(input_dim, spec_augment, self.hparams.utterance_mean)

    # -- shared pieces --------------------------------------------------------------------------
    def encode(self, batch: Batch) -> Encoded:
        """Encoder memory of a batch (features normalised, augmented in training)."""
        return self.model.encode(self.prepare_features(batch), batch.feature_lengths)

    @torch.no_grad()
    def waves_batch(self, waves: list[torch.Tensor]) -> Batch:
        """``(N,)`` mono waveforms at this model's sample rate as one padded batch on the task's
        device, their features computed as the data pipeline computes them."""
        from rnnseq.data.audio import FeatureConfig, LogMel
        from rnnseq.data.batching import Example, collate_examples

        # host: features computed as the data pipeline computes them; the batch is moved below.
        # Built once and kept in a plain dict: as an attribute it would become a submodule, and
        # its buffers part of the checkpoints.
        if "logmel" not in self._host:
            self._host["logmel"] = LogMel(FeatureConfig(**self.hparams.features))  # host: above
        logmel = self._host["logmel"]
        no_tokens = torch.zeros(0, dtype=torch.long)  # host: as above
        examples = [Example(str(i), logmel(wave.float().cpu()), no_tokens, "")  # host: as above
                    for i, wave in enumerate(waves)]
        return self.transfer_batch_to_device(collate_examples(examples), self.device, 0)

    def transcribe_waves(self, waves: list[torch.Tensor], batch_size: int = 8) -> list[str]:
        """Transcripts of ``(N,)`` mono waveforms at this model's sample rate, in order, decoded
        with the ``decoding`` settings, ``batch_size`` at a time."""
        texts = []
        for start in range(0, len(waves), batch_size):
            texts.extend(self.decode(self.waves_batch(waves[start:start + batch_size])))
        return texts

    def score(self, references: list[str], hypotheses: list[str], split: str) -> dict[str, float]:
        rates = M.error_rates(references, hypotheses)
        return {M.split_metric(split, "wer"): rates.wer, M.split_metric(split, "cer"): rates.cer}
