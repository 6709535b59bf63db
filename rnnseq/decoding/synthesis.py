"""Free-running (not teacher-forced) synthesis with a :class:`~rnnseq.models.tacotron.Tacotron`,
a whole batch at once.

The defences against the classic Tacotron failures live here:

- **A stop that fires too early or never**: an utterance stops at the first frame whose stop
  probability exceeds ``stop_threshold`` *and* only once the attention's most weighted input lies
  within the last ``stop_tokens`` tokens (a stop in mid-sentence is ignored); a frame limit of
  ``max_length_ratio`` frames per input token ends the ones that never stop, and they are
  reported as such.
- **Skipping and repeating on long inputs**: with ``window=(backward, forward)`` each step may
  only attend within that many tokens of the previous step's most weighted token (the attention
  constraint of ESPnet's Tacotron 2, here for a whole batch).
- **Batching that changes the output**: every row runs on its own (its own window, its own stop,
  and prenet dropout masks drawn from its own generator seeded by ``seeds``), and the text
  encoder and postnet zero padding, so an utterance synthesises the same alone or in a batch.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from rnnseq.models.tacotron import Tacotron


@dataclass(frozen=True)
class SynthesisSettings:
    """How free-running synthesis stops and where it may attend (see the module docstring)."""

    stop_threshold: float = 0.5
    stop_tokens: int = 3  # the attention must be within this many final tokens to stop
    max_length_ratio: float = 10.0  # most mel frames per input token
    window: tuple[int, int] | None = None  # (backward, forward) tokens around the last focus

    def __post_init__(self):
        if not 0 < self.stop_threshold < 1:
            raise ValueError(f"stop_threshold must be in (0, 1), got {self.stop_threshold}")
        if self.stop_tokens < 1 or self.max_length_ratio <= 0:
            raise ValueError(f"need stop_tokens >= 1 and max_length_ratio > 0, got "
                             f"{self.stop_tokens} and {self.max_length_ratio}")
        if self.window is not None and (len(self.window) != 2 or min(self.window) < 0):
            raise ValueError(f"window must be (backward, forward) token counts >= 0, got "
                             f"{self.window}")


class Synthesis(NamedTuple):
    mel: torch.Tensor  # (B, T, F) after the postnet, zero beyond each length
    lengths: torch.Tensor  # (B,) frames
    stopped: torch.Tensor  # (B,) True where the stop token ended it, False where the limit did
    attention: torch.Tensor  # (B, N, S) one row per decoder step (rows past the stop are junk)


def window_mask(focus: torch.Tensor, memory_mask: torch.Tensor, backward: int,
                forward: int) -> torch.Tensor:
    """``(B, S)`` mask of the tokens within ``backward``/``forward`` tokens of each row's ``(B,)``
    ``focus`` token, and valid."""
    positions = torch.arange(memory_mask.shape[1], device=memory_mask.device).unsqueeze(0)
    focus = focus.unsqueeze(1)
    return memory_mask & (positions >= focus - backward) & (positions <= focus + forward)


def first_stop(stop_probs: torch.Tensor, may_stop: torch.Tensor, threshold: float) -> torch.Tensor:
    """Index of the first of r frames whose ``(B, r)`` stop probability exceeds ``threshold``,
    where ``(B,)`` ``may_stop`` allows it, else -1: ``(B,)`` long."""
    fires = (stop_probs > threshold) & may_stop.unsqueeze(1)  # (B, r)
    first = fires.float().argmax(1)  # first True (argmax returns the first maximum)
    return torch.where(fires.any(1), first, torch.full_like(first, -1))


@torch.no_grad()
def synthesize(model: Tacotron, tokens: torch.Tensor, token_lengths: torch.Tensor,
               settings: SynthesisSettings = SynthesisSettings(),
               seeds: Sequence[int] | None = None,
               speakers: torch.Tensor | None = None) -> Synthesis:
    """Mel frames for ``(B, S)`` input tokens with ``(B,)`` lengths (and ``(B,)`` speaker ids for
    a multi-speaker model); ``seeds`` (one per row) make the prenet's dropout reproducible and
    independent of the batch."""
    b = tokens.shape[0]
    generators = None if seeds is None else [torch.Generator().manual_seed(int(s)) for s in seeds]
    memory, memory_mask = model.encode(tokens, token_lengths, speakers)
    decoder, r = model.decoder, model.reduction
    max_steps = torch.clamp(torch.ceil(token_lengths.float() * settings.max_length_ratio / r),
                            min=1).long()  # (B,)
    state, last = decoder.init_state(memory, memory_mask), decoder.go_frame(memory)
    lengths = max_steps * r  # changed where an utterance stops
    stopped = torch.zeros(b, dtype=torch.bool, device=tokens.device)
    focus = torch.zeros(b, dtype=torch.long, device=tokens.device)
    frames, weights = [], []
    for n in range(int(max_steps.max())):
        step_mask = memory_mask if settings.window is None or n == 0 else window_mask(
            focus, memory_mask, *settings.window)
        step_frames, stop_logits, state, step_weights = decoder.step(last, state, memory,
                                                                     step_mask, generators)
        frames.append(step_frames)
        weights.append(step_weights)
        focus = step_weights.argmax(1)
        near_end = focus >= token_lengths - settings.stop_tokens
        active = ~stopped & (n < max_steps)
        first = first_stop(torch.sigmoid(stop_logits), near_end & active, settings.stop_threshold)
        ends = first >= 0
        lengths = torch.where(ends, n * r + first + 1, lengths)
        stopped |= ends
        if not (~stopped & (n + 1 < max_steps)).any():
            break
        last = step_frames[:, -1]  # (B, F) the last frame of this step feeds the next
    mel = torch.cat(frames, 1)  # (B, N * r, F)
    return Synthesis(model.postnet_mel(mel, lengths), lengths, stopped, torch.stack(weights, 1))


def utterance_seed(text: str, seed: int = 0) -> int:
    """A seed for one utterance's prenet masks from its text and a run seed: the same sentence
    gets the same masks in any batch and any order."""
    return zlib.crc32(f"{seed}:{text}".encode())
