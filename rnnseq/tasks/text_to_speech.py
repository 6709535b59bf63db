"""Text-to-speech as a LightningModule: a Tacotron 2 trained teacher-forced on normalised
log-mel frames, evaluated free-running.

Losses (each logged): L1 + L2 on the decoder's mel and on the postnet's, over real frames only
(``mel_loss``, ``postnet_loss``); binary cross-entropy of the per-frame stop logits with a weight
on the single positive frame (``stop_loss``); and an optional guided attention loss
(``guided_attention_loss``, training only, so that ``val/loss`` compares across settings).

The test splits are synthesised free-running (:func:`rnnseq.decoding.synthesis.synthesize`) and
scored per utterance: mel-cepstral distortion against the recording's own log-mel
(:func:`rnnseq.metrics.mel_cepstral_distortion`), whether the stop token ended it, its length
over the recording's, and the focus rate of its attention (mean over decoder steps of the
largest weight; near 1 for a sharp alignment).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from rnnseq import metrics as M
from rnnseq.data.audio import FeatureConfig, FeatureNormalizer
from rnnseq.data.batching import Batch, make_pad_mask
from rnnseq.data.tokenizer import CharTokenizer, WordTokenizer
from rnnseq.data.vocoder import GriffinLimVocoder
from rnnseq.decoding.synthesis import SynthesisSettings, synthesize, utterance_seed
from rnnseq.models.guided_attention import guided_attention_loss
from rnnseq.models.tacotron import build_tacotron
from rnnseq.tasks.base import Task, gather_rows, to_plain
from rnnseq.tasks.seq2seq import check_guided_attention, guided_attention_weight

LOSS_KEYS = ("stop_pos_weight", "guided_attention")


def check_losses(settings: Mapping[str, Any] | None) -> dict:
    """``task.losses`` with defaults filled in; unknown keys or values out of range are a
    ``ValueError`` naming the key."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(LOSS_KEYS))
    if unknown:
        raise ValueError(f"unknown task.losses settings {unknown}; known: {list(LOSS_KEYS)}")
    pos_weight = float(settings.get("stop_pos_weight", 5.0))
    if pos_weight <= 0:
        raise ValueError(f"task.losses.stop_pos_weight must be > 0, got {pos_weight}")
    return {"stop_pos_weight": pos_weight,
            "guided_attention": check_guided_attention(settings.get("guided_attention"))}


EVALUATION_KEYS = ("asr",)


def check_evaluation(settings: Mapping[str, Any] | None) -> dict:
    """``task.evaluation`` with defaults filled in; unknown keys are a ``ValueError``."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(EVALUATION_KEYS))
    if unknown:
        raise ValueError(f"unknown task.evaluation settings {unknown}; known: "
                         f"{list(EVALUATION_KEYS)}")
    return {"asr": settings.get("asr")}


def focus_rate(weights: torch.Tensor) -> float:
    """Mean over decoder steps of the largest attention weight of ``(N, S)`` weights."""
    return float(weights.max(-1).values.mean()) if weights.numel() else float("nan")


class TextToSpeech(Task):
    """Tacotron 2 text-to-speech.

    Everything needed to rebuild the model is in its hyper-parameters (model config, symbol
    table, feature settings, speakers) and the feature statistics are buffers, so
    ``TextToSpeech.load_from_checkpoint(path)`` synthesises without the corpus.

    Args:
        model: the ``model`` config group (``encoder``, ``decoder``, ``attention``, ``postnet``
            partials and ``speaker_dim``).
        vocabulary: the input symbols (from the datamodule).
        features: the log-mel settings (from the datamodule).
        optimizer, scheduler: as for every task (:class:`~rnnseq.tasks.base.Task`).
        inputs: ``phonemes`` or ``characters`` (from the datamodule).
        phoneme_voice: the espeak-ng voice that turns new text into phonemes (from the
            datamodule), so that ``rnnseq.synthesize`` reads text as training did.
        speakers: speaker names of a multi-speaker corpus (from the datamodule), else ``None``.
        losses: ``stop_pos_weight`` (weight of the positive stop frame) and ``guided_attention``
            (``weight``, ``sigma``, ``anneal_steps``; see
            :func:`~rnnseq.tasks.seq2seq.check_guided_attention`).
        synthesis: :class:`~rnnseq.decoding.synthesis.SynthesisSettings` of free-running
            synthesis (``stop_threshold``, ``stop_tokens``, ``max_length_ratio``, ``window``)
            and ``seed`` (of the prenet's inference dropout, mixed with each text).
        vocoder: :class:`~rnnseq.data.vocoder.GriffinLimVocoder` settings (``n_iter``,
            ``power``, ``momentum``, ``seed``): how synthesised mels become audio.
        evaluation: ``asr``, a speech-to-text run folder or checkpoint: test splits are then
            also scored by intelligibility (:meth:`round_trip`); ``None`` skips that.
        normalizer: the transcript normaliser of the data (recorded for evaluation).
    """

    MONITOR = M.VAL_LOSS
    # the teacher-forced losses that validation logs: compute_losses key -> metric
    VALIDATION_LOSSES = {"loss": M.VAL_LOSS, "mel": M.VAL_MEL_LOSS,
                         "postnet": M.VAL_POSTNET_LOSS, "stop": M.VAL_STOP_LOSS}
    VALIDATION_LOGGED = tuple(VALIDATION_LOSSES.values())

    def __init__(
        self,
        model: Mapping[str, Any],
        vocabulary: list[str],
        features: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        inputs: str = "phonemes",
        phoneme_voice: str = "en-us",
        speakers: list[str] | None = None,
        losses: Mapping[str, Any] | None = None,
        synthesis: Mapping[str, Any] | None = None,
        vocoder: Mapping[str, Any] | None = None,
        evaluation: Mapping[str, Any] | None = None,
        normalizer: str = "letters",
    ):
        super().__init__()
        self.save_hyperparameters({
            "model": to_plain(model), "vocabulary": list(vocabulary),
            "features": to_plain(features), "optimizer": to_plain(optimizer),
            "scheduler": to_plain(scheduler), "inputs": inputs, "phoneme_voice": phoneme_voice,
            "speakers": list(speakers) if speakers else None,
            "losses": check_losses(to_plain(losses)),
            "synthesis": {}, "normalizer": normalizer,
            "vocoder": to_plain(vocoder) or {},
            "evaluation": check_evaluation(to_plain(evaluation)),
        })
        self.set_synthesis(to_plain(synthesis) or {})  # unknown keys fail here
        self.tokenizer = WordTokenizer(vocabulary) if inputs == "phonemes" else CharTokenizer(
            vocabulary)
        self.n_mels = int(self.hparams.features["n_mels"])
        self.model = build_tacotron(self.hparams.model, len(self.tokenizer), self.n_mels,
                                    len(self.hparams.speakers or []))
        self.normalizer = FeatureNormalizer(self.n_mels)  # statistics set by the datamodule
        self.vocoder = GriffinLimVocoder(FeatureConfig(**self.hparams.features),
                                         **self.hparams.vocoder)  # unknown keys fail here
        self._rows: list[dict] = []
        self._mels: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._recognizers: dict[str, Any] = {}
        self.test_results: list[dict] = []

    # -- inputs and targets ---------------------------------------------------------------------
    def model_inputs(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S + 1)`` input ids with ``<eos>`` after each text (the attention's place to
        rest when it is done) and their ``(B,)`` lengths."""
        b = batch.targets.shape[0]
        tokens = torch.cat([batch.targets, batch.targets.new_zeros(b, 1)], 1)
        tokens.scatter_(1, batch.target_lengths.unsqueeze(1), self.tokenizer.eos_id)
        return tokens, batch.target_lengths + 1

    def target_mel(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, F)`` normalised log-mel targets (zero on padding) and their ``(B, T)`` mask."""
        mask = make_pad_mask(batch.feature_lengths, batch.features.shape[1])
        return self.normalizer(batch.features, mask), mask

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised ``(..., F)`` frames back to log-mel."""
        return mel * self.normalizer.std + self.normalizer.mean

    # -- losses ---------------------------------------------------------------------------------
    def compute_losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """``{"loss", "mel", "postnet", "stop"}`` (and ``"guided"`` in training with guided
        attention) of a teacher-forced batch."""
        tokens, token_lengths = self.model_inputs(batch)
        target, mask = self.target_mel(batch)
        out = self.model(tokens, token_lengths, target, batch.feature_lengths, batch.speakers)
        frames = target.shape[1]
        valid = mask.unsqueeze(-1).float()  # (B, T, 1)
        count = valid.sum() * self.n_mels

        def l1_l2(predicted: torch.Tensor) -> torch.Tensor:
            error = (predicted[:, :frames].float() - target) * valid
            return (error.abs().sum() + error.pow(2).sum()) / count

        stop_target = F.one_hot(batch.feature_lengths - 1, frames).float()  # (B, T): last frame
        stop_terms = F.binary_cross_entropy_with_logits(
            out.stop_logits[:, :frames].float(), stop_target, reduction="none",
            pos_weight=torch.tensor(self.hparams.losses["stop_pos_weight"], device=self.device))
        losses = {"mel": l1_l2(out.mel), "postnet": l1_l2(out.mel_postnet),
                  "stop": (stop_terms * mask).sum() / mask.sum()}
        losses["loss"] = losses["mel"] + losses["postnet"] + losses["stop"]
        guide = self.hparams.losses["guided_attention"]
        weight = guided_attention_weight(guide, self.global_step) if self.training else 0.0
        if weight > 0:
            steps = -(-batch.feature_lengths // self.model.reduction)
            losses["guided"] = guided_attention_loss(out.attention, steps, token_lengths,
                                                     guide["sigma"])
            losses["loss"] = losses["loss"] + weight * losses["guided"]
        return losses

    def training_loss(self, batch: Batch) -> torch.Tensor:
        losses = self.compute_losses(batch)
        b = len(batch.ids)
        self.log(M.TRAIN_LOSS, losses["loss"], batch_size=b)
        self.log(M.TRAIN_MEL_LOSS, losses["mel"], batch_size=b)
        self.log(M.TRAIN_POSTNET_LOSS, losses["postnet"], batch_size=b)
        self.log(M.TRAIN_STOP_LOSS, losses["stop"], batch_size=b)
        if "guided" in losses:
            self.log(M.TRAIN_GUIDED_ATTENTION_LOSS, losses["guided"], batch_size=b)
        return losses["loss"]

    def input_symbols(self, text: str) -> str:
        """What the model reads for a new ``text``: its normalised characters, or the espeak-ng
        phonemes of the normalised text (as the data module made them for training)."""
        from rnnseq.data.normalize import normalize_text

        text = normalize_text(text, self.hparams.normalizer)
        if self.hparams.inputs != "phonemes":
            return text
        from rnnseq.data.builders.espeak import EspeakSynthesizer

        return EspeakSynthesizer.shared().phoneme_symbols(text, self.hparams.phoneme_voice)

    def unspeakable(self, text: str, symbols: str | None = None) -> list[str]:
        """What of ``text`` this model will not say: the characters its normaliser drops
        (:func:`rnnseq.data.normalize.unspeakable`), then the input symbols it has no id for
        (read as ``<unk>``), each once. ``symbols``: ``input_symbols(text)``, if known."""
        from rnnseq.data.normalize import unspeakable

        dropped = unspeakable(text, self.hparams.normalizer)
        symbols = self.input_symbols(text) if symbols is None else symbols
        unknown = sorted(self.tokenizer.unknown_symbols(symbols))
        return list(dict.fromkeys(dropped + unknown))

    # -- synthesis ------------------------------------------------------------------------------
    def set_synthesis(self, changes: Mapping[str, Any]) -> None:
        """Applies ``changes`` to ``hparams.synthesis`` (:class:`SynthesisSettings` keys and
        ``seed``); an unknown key or a value out of range is a ``ValueError``."""
        merged = {**self.hparams.synthesis, **changes}
        settings = {k: v for k, v in merged.items() if k != "seed"}
        if settings.get("window") is not None:
            settings["window"] = tuple(settings["window"])
        try:
            self.synthesis_settings = SynthesisSettings(**settings)
        except TypeError as err:  # an unknown key
            raise ValueError(f"task.synthesis: {err}") from None
        self.synthesis_seed = int(merged.get("seed", 0))
        self.hparams.synthesis.update(changes)

    def set_evaluation(self, changes: Mapping[str, Any]) -> None:
        """Applies ``changes`` to ``hparams.evaluation`` (``asr``: a speech-to-text run or
        null); an unknown key is a ``ValueError``."""
        unknown = sorted(set(changes) - set(self.hparams.evaluation))
        if unknown:
            raise ValueError(f"task.evaluation has no {unknown}; it has "
                             f"{sorted(self.hparams.evaluation)}")
        self.hparams.evaluation.update(changes)

    @torch.no_grad()
    def synthesize_batch(self, batch: Batch):
        """Free-running synthesis of a batch (:func:`rnnseq.decoding.synthesis.synthesize`),
        each utterance's prenet dropout seeded by its text; the mel is normalised."""
        tokens, token_lengths = self.model_inputs(batch)
        seeds = [utterance_seed(text, self.synthesis_seed) for text in batch.texts]
        return synthesize(self.model, tokens, token_lengths, self.synthesis_settings, seeds,
                          batch.speakers)

    @torch.no_grad()
    def sample_syntheses(self, batch: Batch) -> dict[str, tuple]:
        """What the samples callback shows: ``{"teacher_forced" | "free_running": (mel, lengths,
        attention)}`` with ``(B, T, F)`` log-mel frames (denormalised), ``(B,)`` frame counts and
        ``(B, N, S)`` attention weights."""
        was_training = self.training
        self.eval()
        try:
            tokens, token_lengths = self.model_inputs(batch)
            target, _ = self.target_mel(batch)
            forced = self.model(tokens, token_lengths, target, batch.feature_lengths,
                                batch.speakers)
            free = self.synthesize_batch(batch)
        finally:
            self.train(was_training)
        return {"teacher_forced": (self.denormalize(forced.mel_postnet), batch.feature_lengths,
                                   forced.attention),
                "free_running": (self.denormalize(free.mel), free.lengths, free.attention)}

    # -- intelligibility ------------------------------------------------------------------------
    def recognizer(self):
        """The speech-to-text task of ``evaluation.asr`` (loaded once, on this task's device)."""
        path = self.hparams.evaluation["asr"]
        # kept in a plain dict: as an attribute it would become a submodule, and its weights
        # part of this task's checkpoints
        if path not in self._recognizers:
            from rnnseq.checkpoints import load_task
            from rnnseq.tasks.speech_to_text import SpeechToText

            try:
                self._recognizers[path] = load_task(SpeechToText, path, str(self.device))
            except FileNotFoundError as err:
                raise FileNotFoundError(f"task.evaluation.asr={path}: {err}; train one with "
                                        f"`python -m rnnseq.train experiment=asr`") from None
        return self._recognizers[path]

    def round_trip(self, rows: list[dict], split: str) -> None:
        """Adds to each test row what a speech recogniser (``evaluation.asr``) hears in three
        versions of the sentence: the synthesis through the vocoder (``synthesis_transcript``),
        the recording's own mel through the vocoder (``copy_transcript``: what the vocoder alone
        loses) and the recording itself (``recording_transcript``: what the recogniser loses);
        and the MCD of the vocoded synthesis and of the vocoded recording, both analysed again
        from their audio (``vocoded_mcd``, ``copy_mcd``, the vocoder's floor)."""
        import torchaudio

        from rnnseq.data.audio import LogMel, load_audio
        from rnnseq.data.normalize import normalize_text

        asr = self.recognizer()
        asr_rate = int(asr.hparams.features["sample_rate"])
        own = FeatureConfig(**self.hparams.features)
        analyse = LogMel(own).to(self.device)
        paths = self._tested_audio_paths()
        waves: dict[str, list[torch.Tensor]] = {"synthesis": [], "copy": [], "recording": []}
        for row in rows:
            predicted, reference = self._mels[row["id"]]
            synthesis, copy = self.vocoder(predicted), self.vocoder(reference)
            row["vocoded_mcd"] = M.mel_cepstral_distortion(reference, analyse(synthesis))
            row["copy_mcd"] = M.mel_cepstral_distortion(reference, analyse(copy))
            for kind, wave in (("synthesis", synthesis), ("copy", copy)):
                if own.sample_rate != asr_rate:
                    wave = torchaudio.functional.resample(wave, own.sample_rate, asr_rate)
                waves[kind].append(wave)
            waves["recording"].append(load_audio(paths[row["id"]], asr_rate))
            # the sentence as this model was asked to say it, written as the recogniser writes
            said = normalize_text(row["text"], self.hparams.normalizer)
            row["reference_text"] = normalize_text(said, asr.hparams.normalizer)
        for kind, kind_waves in waves.items():
            for row, text in zip(rows, asr.transcribe_waves(kind_waves)):
                row[f"{kind}_transcript"] = text
        self._mels = {}

    def _tested_audio_paths(self) -> dict[str, str]:
        """Utterance id -> recording path of the loader(s) under test (a split of the training
        datamodule, or the loader that rnnseq.evaluate passes)."""
        loaders = self.trainer.test_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        return {u.id: u.audio_path for loader in loaders
                for u in getattr(loader.dataset, "utterances", [])}

    # -- evaluation -----------------------------------------------------------------------------
    def start_evaluation(self, split: str) -> None:
        self._rows, self._mels = [], {}

    def evaluation_step(self, batch: Batch, split: str) -> None:
        if split == "val":
            b = len(batch.ids)
            losses = self.compute_losses(batch)
            self.accumulate(items=b, **{key: losses[key] * b for key in self.VALIDATION_LOSSES})
            return
        result = self.synthesize_batch(batch)
        token_lengths = batch.target_lengths + 1  # with <eos> (model_inputs)
        steps = -(-result.lengths // self.model.reduction)  # decoder steps up to the stop
        for i, utt_id in enumerate(batch.ids):
            frames, reference = int(result.lengths[i]), int(batch.feature_lengths[i])
            predicted = self.denormalize(result.mel[i, :frames])
            weights = result.attention[i, :int(steps[i]), :int(token_lengths[i])]
            self._rows.append({
                "id": utt_id, "text": batch.texts[i], "stopped": bool(result.stopped[i]),
                "frames": frames, "reference_frames": reference,
                "length_ratio": frames / reference, "focus_rate": focus_rate(weights),
                "mcd": M.mel_cepstral_distortion(batch.features[i, :reference], predicted),
            })
            if self.hparams.evaluation["asr"]:  # kept for the round trip, not for the results
                self._mels[utt_id] = (predicted.float(), batch.features[i, :reference].float())

    def end_evaluation(self, split: str) -> None:
        if split == "val":
            sums = self.evaluation_totals([*self.VALIDATION_LOSSES, "items"])
            items = max(sums.pop("items"), 1.0)
            for key, name in self.VALIDATION_LOSSES.items():
                self.log(name, sums[key] / items, prog_bar=key == "loss")
            return
        if self.hparams.evaluation["asr"]:
            self.round_trip(self._rows, split)  # each rank its own share, before gathering
        rows = gather_rows(self._rows)
        if not rows:
            return
        if self.hparams.evaluation["asr"]:
            for kind in ("synthesis", "copy", "recording"):
                rates = M.error_rates([r["reference_text"] for r in rows],
                                      [r[f"{kind}_transcript"] for r in rows])
                self.log(M.split_metric(split, f"{kind}_cer"), rates.cer)
                self.log(M.split_metric(split, f"{kind}_wer"), rates.wer)
            for key in ("vocoded_mcd", "copy_mcd"):
                self.log(M.split_metric(split, key), statistics.fmean(r[key] for r in rows))
        self.log(M.split_metric(split, "mcd"), statistics.fmean(r["mcd"] for r in rows))
        self.log(M.split_metric(split, "stopped"),
                 sum(r["stopped"] for r in rows) / len(rows))
        self.log(M.split_metric(split, "length_ratio"),
                 statistics.median(r["length_ratio"] for r in rows))
        self.log(M.split_metric(split, "focus_rate"),
                 statistics.fmean(r["focus_rate"] for r in rows))
        self.test_results = rows
