"""Shallow fusion: a separately trained language model rescoring every beam-search step.

``score(y_t) = log p_decoder(y_t | ...) + lm_weight * log p_LM(y_t | y_<t)`` (Gulcehre et al.,
2015). The language model must have been trained on lines (``data.mode=lines``) so that its
``<eos>`` means end of sentence, as it does for the decoder.
"""

from __future__ import annotations

import torch

from rnnseq.data.tokenizer import Tokenizer
from rnnseq.decoding.scorer import Scorer, Step
from rnnseq.models.language_model import LMState, RNNLanguageModel, select_lm_state


def vocabulary_map(target: Tokenizer, lm: Tokenizer) -> torch.Tensor:
    """``(V_target,)`` LM id of every target symbol; raises if the LM lacks one.

    Tokenizers with symbol tables (characters, words) are matched symbol by symbol, so the two
    tables may order or extend them differently; other tokenizers must be identical.
    """
    target_symbols = getattr(target, "symbols", None)
    lm_symbols = getattr(lm, "symbols", None)
    if target.kind != lm.kind:
        raise ValueError(f"the fusion language model uses {lm.kind!r} tokens but the decoder uses "
                         f"{target.kind!r}; train the LM with data.tokenizer.kind={target.kind}")
    if target.kind in ("bpe", "unigram"):
        if target.state() != lm.state():
            raise ValueError("the fusion language model's sentencepiece model differs from the "
                             "decoder's; train it with the same tokenizer state")
        return torch.arange(len(target))  # host: an index built once; LMFusion moves it
    lm_index = {s: i for i, s in enumerate(lm_symbols)}
    missing = [s for s in target_symbols if s not in lm_index]
    if missing:
        raise ValueError(f"the fusion language model has no id for decoder symbols {missing}; "
                         f"train it on text with the same characters")
    # host: an index built once; LMFusion moves it
    return torch.tensor([lm_index[s] for s in target_symbols], dtype=torch.long)


class LMFusion:
    """A language model that scores the decoder's vocabulary, one step at a time.

    States are batch-first in the beam search's row order: ``initial(N)`` starts N rows,
    ``select`` reorders them, ``advance`` feeds each row's newest token.
    """

    def __init__(self, model: RNNLanguageModel, lm_tokenizer: Tokenizer, target: Tokenizer):
        self.model = model.eval()
        self.index = vocabulary_map(target, lm_tokenizer)  # (V_target,)
        self.lm_eos = lm_tokenizer.eos_id

    def to(self, device: torch.device) -> LMFusion:
        """Moves the language model to ``device``; returns ``self``."""
        self.model.to(device)
        self.index = self.index.to(device)
        return self

    def _log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, V_lm)`` logits -> ``(N, V_target)`` log-probabilities of the target symbols."""
        return torch.log_softmax(logits.float(), dim=-1).index_select(1, self.index)

    @torch.no_grad()
    def initial(self, rows: int) -> tuple[torch.Tensor, LMState]:
        """Log-probabilities of the first token (after ``<eos>``) for ``rows`` rows, and the state."""
        device = self.index.device
        start = torch.full((rows,), self.lm_eos, dtype=torch.long, device=device)
        logits, state = self.model.step(start, None)
        return self._log_probs(logits), state

    @torch.no_grad()
    def advance(self, target_tokens: torch.Tensor, state: LMState) -> tuple[torch.Tensor, LMState]:
        """Feeds ``(N,)`` target-vocabulary tokens; next log-probabilities ``(N, V_target)``."""
        logits, state = self.model.step(self.index[target_tokens], state)
        return self._log_probs(logits), state

    @staticmethod
    def select(state: LMState, rows: torch.Tensor) -> LMState:
        return select_lm_state(state, rows)


class LMScorer(Scorer):
    """Shallow fusion as a scorer: ``log p_LM(y_t | y_<t)`` of every next token.

    Its state holds the log-probabilities of the next token and the language model's state, so
    that :meth:`select` runs the language model once per search step, on the chosen tokens.
    """

    def __init__(self, fusion: LMFusion):
        self.fusion = fusion

    def init_state(self, rows):
        """The language model after its start symbol, one row per hypothesis."""
        return self.fusion.initial(len(rows))

    def score(self, state, step: Step):
        """The next-token log-probabilities computed when the last token was selected."""
        log_probs, _ = state
        return log_probs, state

    def keep(self, state, rows):
        """The next-token log-probabilities and language-model states of ``rows`` only."""
        log_probs, lm_state = state
        return log_probs[rows], self.fusion.select(lm_state, rows)

    def select(self, pending, rows, tokens):
        """Reorders the language model's states and feeds each row its chosen token."""
        _, lm_state = pending
        return self.fusion.advance(tokens, self.fusion.select(lm_state, rows))
