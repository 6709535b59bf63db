"""Language modelling as a LightningModule: truncated BPTT over token streams (or independent
lines), loss / perplexity / bits per character, and text generation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from rnnseq import metrics as M
from rnnseq.data.text import TextBatch, encode_stream
from rnnseq.data.tokenizer import tokenizer_from_state
from rnnseq.decoding.sampling import generate
from rnnseq.models.language_model import LMState, RNNLanguageModel, detach_state
from rnnseq.tasks.base import Task, to_plain


@dataclass(frozen=True)
class TextScore:
    """How well a language model predicts a text."""

    tokens: int  # tokens scored (every token of the text, line ends as <eos>)
    loss: float  # mean negative log-likelihood per token, in nats
    bits_per_char: float | None  # loss / ln 2, for character models only

    @property
    def perplexity(self) -> float:
        """``exp(loss)``: as unsure as a uniform choice among this many tokens."""
        return math.exp(min(self.loss, 50.0))


DEFAULT_GENERATION = {"prompt": "", "length": 300, "temperature": 0.8, "top_k": 0, "top_p": 1.0,
                      "seed": 0}


class LanguageModel(Task):
    """Next-token prediction with a recurrent language model.

    In stream mode (batches marked ``stateful``) the recurrent state of each batch row is carried
    into the next batch and detached, so gradients flow through at most ``bptt`` steps while the
    model still reads the whole stream; validation and test carry their own states the same way.
    Everything needed to rebuild the model, the tokenizer included, is in the hyper-parameters.

    Args:
        model: the ``model`` config group; ``model.lm`` builds the network from ``vocab_size``
            (a Hydra ``_partial_``, e.g. :class:`~rnnseq.models.language_model.RNNLanguageModel`).
        tokenizer: the tokenizer's saved state (from the datamodule).
        optimizer, scheduler: see :class:`~rnnseq.tasks.base.Task`.
        generation: ``prompt``, ``length``, ``temperature``, ``top_k``, ``top_p``, ``seed`` of the
            sample logged to TensorBoard after every validation epoch.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        tokenizer: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        generation: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters({
            "model": to_plain(model), "tokenizer": to_plain(tokenizer),
            "optimizer": to_plain(optimizer), "scheduler": to_plain(scheduler),
            "generation": {**DEFAULT_GENERATION, **(to_plain(generation) or {})},
        })
        self.tokenizer = tokenizer_from_state(self.hparams.tokenizer)
        self.model: RNNLanguageModel = instantiate(self.hparams.model["lm"])(
            vocab_size=len(self.tokenizer))
        self._states: dict[str, LMState | None] = {}
        self._totals: dict[str, torch.Tensor] = {}

    MONITOR = M.VAL_LOSS

    def validation_metrics(self) -> tuple[str, ...]:
        """Loss and perplexity; bits per character for character models."""
        return (M.VAL_LOSS, M.VAL_PPL, *((M.VAL_BPC,) if self.is_character_model else ()))

    @property
    def is_character_model(self) -> bool:
        """Whether tokens are characters (bits per character are then reported)."""
        return self.tokenizer.kind == "char"

    def token_nll(self, batch: TextBatch, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed negative log-likelihood (nats) of the batch's real target tokens and their count.

        Stateful batches start from (and update) the state carried for ``split``.
        """
        state = self._states.get(split) if batch.stateful else None
        if state is not None and state[0].shape[1] != batch.inputs.shape[0]:
            state = None  # a different number of streams: a new stream layout starts
        logits, state = self.model(batch.inputs, state)
        self._states[split] = detach_state(state) if batch.stateful else None
        nll = F.cross_entropy(logits.float().transpose(1, 2), batch.targets,
                              ignore_index=self.tokenizer.pad_id, reduction="sum")
        return nll, (batch.targets != self.tokenizer.pad_id).sum()

    # -- training -------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        self._states["train"] = None

    def training_loss(self, batch: TextBatch) -> torch.Tensor:
        nll, count = self.token_nll(batch, "train")
        loss = nll / count.clamp_min(1)
        # Neither prog_bar (callbacks.ProgressBar shows it) nor a batch size read from a tensor:
        # both would wait for the device every step.
        self.log(M.TRAIN_LOSS, loss, batch_size=batch.targets.shape[0])
        return loss

    # -- evaluation -----------------------------------------------------------------------------
    def start_evaluation(self, split: str) -> None:
        self._states[split] = None
        self._totals[split] = torch.zeros(2, dtype=torch.float64, device=self.device)

    def evaluation_step(self, batch: TextBatch, split: str) -> None:
        nll, count = self.token_nll(batch, split)
        self._totals[split] += torch.stack([nll.detach().double(), count.double()])

    def end_evaluation(self, split: str) -> None:
        """Corpus-level loss (mean NLL per token over the whole split), perplexity, bits/char."""
        totals = self.all_gather(self._totals[split])
        if totals.dim() > 1:
            totals = totals.sum(0)
        nll, count = float(totals[0]), float(totals[1])
        loss = nll / max(count, 1.0)
        prefix = split.upper()
        loss_name, ppl_name, bpc_name = (M.metric_name(f"{prefix}_{key}")
                                         for key in ("LOSS", "PPL", "BPC"))
        # Every rank holds the same totals, so every rank logs the same value (and callbacks that
        # monitor it, such as checkpointing and early stopping, agree across ranks).
        self.log(loss_name, loss, prog_bar=True)
        self.log(ppl_name, math.exp(min(loss, 50.0)), prog_bar=True)
        if self.is_character_model:
            self.log(bpc_name, loss / math.log(2))

    @torch.inference_mode()
    def score_text(self, text: str, chunk: int = 512) -> TextScore:
        """Loss, perplexity and bits per character of ``text`` (lines end with ``<eos>``, as in
        training streams). The model reads the text in ``chunk``-token windows, carrying its
        state, starting after an ``<eos>`` as if a new line began."""
        ids = encode_stream(text.splitlines(), self.tokenizer).to(self.device)
        if ids.numel() == 0:
            raise ValueError("score_text needs a non-empty text")
        stream = torch.cat([ids.new_tensor([self.tokenizer.eos_id]), ids])
        was_training = self.training
        self.eval()
        nll, state = 0.0, None
        for start in range(0, ids.numel(), chunk):
            inputs = stream[start:start + chunk].unsqueeze(0)  # (1, T)
            targets = stream[start + 1:start + 1 + chunk].unsqueeze(0)
            logits, state = self.model(inputs[:, :targets.shape[1]], state)
            nll += float(F.cross_entropy(logits.float().transpose(1, 2), targets, reduction="sum"))
        self.train(was_training)
        loss = nll / ids.numel()
        return TextScore(int(ids.numel()), loss,
                         loss / math.log(2) if self.is_character_model else None)

    # -- generation -----------------------------------------------------------------------------
    def generate_text(self, prompt: str = "", length: int = 300, temperature: float = 1.0,
                      top_k: int = 0, top_p: float = 1.0, seed: int | None = 0) -> str:
        """The prompt followed by ``length`` sampled tokens, as text (``<eos>`` as line breaks)."""
        generator = torch.Generator(device=self.device)
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
        prompt_ids = self.tokenizer.encode(prompt) if prompt else []
        new = generate(self.model, prompt_ids, length, self.tokenizer.eos_id, temperature,
                       top_k, top_p, generator)
        return self.tokenizer.decode_stream(prompt_ids + new)
