"""What the tasks on speech features share: normalisation with the training split's statistics
(set by the datamodule, kept in the checkpoint) and SpecAugment in training."""

from __future__ import annotations

import torch

from rnnseq.data.audio import FeatureNormalizer, SpecAugment
from rnnseq.data.batching import Batch, make_pad_mask


class SpeechInput:
    """Mixin for LightningModules that read log-mel features. Call :meth:`init_speech_input`
    in ``__init__``; :meth:`prepare_features` then gives the model's input."""

    normalizer: FeatureNormalizer
    spec_augment: SpecAugment | None
    training: bool
    global_step: int

    def init_speech_input(self, num_features: int, spec_augment: dict | None,
                          utterance_mean: bool = False) -> None:
        """Creates the normaliser (statistics set later by the datamodule; ``utterance_mean``
        also removes each utterance's mean) and SpecAugment."""
        self.normalizer = FeatureNormalizer(num_features, utterance_mean)
        self.spec_augment = SpecAugment(**spec_augment) if spec_augment else None

    def prepare_features(self, batch: Batch) -> torch.Tensor:
        """Normalised (and, in training from ``spec_augment.start_step`` on, SpecAugment-ed)
        ``(B, S, F)`` features."""
        mask = make_pad_mask(batch.feature_lengths, batch.features.shape[1])
        features = self.normalizer(batch.features, mask)
        augment = self.spec_augment
        if augment is not None and self.training and self.global_step >= augment.start_step:
            features = augment(features) * mask.unsqueeze(-1)
        return features
