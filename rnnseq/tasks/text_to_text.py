"""Text-to-text (grapheme-to-phoneme by default): the speech models' encoder, decoder and
attention behind a token-embedding front end; scored by symbol error rate and whole-sequence
error rate."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from rnnseq import metrics as M
from rnnseq.data.batching import Batch
from rnnseq.data.tokenizer import tokenizer_from_state
from rnnseq.models.seq2seq import Encoded, build_seq2seq
from rnnseq.tasks.base import to_plain
from rnnseq.tasks.scheduled_sampling import check_scheduled_sampling
from rnnseq.tasks.seq2seq import Seq2SeqTask


def sequence_error_rates(references: list[str], hypotheses: list[str]) -> tuple[float, float]:
    """``(symbol error rate, sequence error rate)`` over a split of space-separated symbols.

    The symbol rate is corpus-level edit distance over symbols (phoneme error rate for g2p); the
    sequence rate is the share of items not reproduced exactly (g2p's word error rate).
    """
    if not references:
        return float("nan"), float("nan")
    symbol_rate = M.error_rates(references, hypotheses).wer  # words of these strings are symbols
    wrong = sum(r.split() != h.split() for r, h in zip(references, hypotheses))
    return symbol_rate, wrong / len(references)


class TextToText(Seq2SeqTask):
    """Attention encoder-decoder from source tokens to target symbols.

    Args:
        model: the ``model`` config group (``encoder``, ``decoder``, ``attention``); the encoder
            reads ``source_embed_dim``-wide embeddings of the source tokens.
        source_tokenizer, target_tokenizer: saved tokenizer states (from the datamodule).
        optimizer, scheduler: see :class:`~rnnseq.tasks.base.Task`.
        source_embed_dim: width of the source-token embedding (the encoder's input size).
        source_dropout: dropout on the source embeddings.
        ctc_weight, label_smoothing, decoding, scheduled_sampling: as for
            :class:`~rnnseq.tasks.speech_to_text.SpeechToText`.
    """

    MONITOR = M.VAL_PER  # symbol (phoneme) error rate: finer-grained than whole-sequence errors
    VALIDATION_LOGGED = (M.VAL_LOSS, M.VAL_PER, M.VAL_WER)
    PROGRESS_BAR_METRICS = (M.VAL_PER, M.VAL_WER)

    def __init__(
        self,
        model: Mapping[str, Any],
        source_tokenizer: Mapping[str, Any],
        target_tokenizer: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        source_embed_dim: int = 128,
        source_dropout: float = 0.1,
        ctc_weight: float = 0.0,
        label_smoothing: float = 0.1,
        decoding: Mapping[str, Any] | None = None,
        scheduled_sampling: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"task.ctc_weight must be in [0, 1], got {ctc_weight}")
        self.save_hyperparameters({
            "model": to_plain(model), "source_tokenizer": to_plain(source_tokenizer),
            "target_tokenizer": to_plain(target_tokenizer), "optimizer": to_plain(optimizer),
            "scheduler": to_plain(scheduler), "source_embed_dim": source_embed_dim,
            "source_dropout": source_dropout, "ctc_weight": ctc_weight,
            "label_smoothing": label_smoothing, "decoding": to_plain(decoding) or {},
            "scheduled_sampling": check_scheduled_sampling(to_plain(scheduled_sampling)),
        })
        self.source_tokenizer = tokenizer_from_state(self.hparams.source_tokenizer)
        self.tokenizer = tokenizer_from_state(self.hparams.target_tokenizer)
        self.source_embed = nn.Sequential(
            nn.Embedding(len(self.source_tokenizer), source_embed_dim,
                         padding_idx=self.source_tokenizer.pad_id),
            nn.Dropout(source_dropout),
        )
        self.model = build_seq2seq(self.hparams.model, source_embed_dim, len(self.tokenizer),
                                   ctc=ctc_weight > 0)
        self.set_decoding()  # refuses decoding settings that cannot apply to this model

    def encode(self, batch: Batch) -> Encoded:
        """``(B, S)`` source ids -> encoder memory."""
        return self.model.encode(self.source_embed(batch.features), batch.feature_lengths)

    def score(self, references: list[str], hypotheses: list[str], split: str) -> dict[str, float]:
        symbol_rate, sequence_rate = sequence_error_rates(references, hypotheses)
        return {M.metric_name(f"{split.upper()}_PER"): symbol_rate,
                M.metric_name(f"{split.upper()}_WER"): sequence_rate}
