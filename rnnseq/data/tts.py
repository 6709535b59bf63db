"""Speech synthesis data: the speech data module read the other way round. Each item's tokens
are what the model reads (phonemes or characters of the text) and its log-mel features are what
it must produce.

Phonemes come from the manifest's ``phonemes`` field (the embedded corpus writes it) or, where a
manifest has none (LJSpeech, your own recordings), from espeak-ng at setup, with word
boundaries (:meth:`~rnnseq.data.builders.espeak.EspeakSynthesizer.phoneme_symbols`). A manifest
``speaker`` field gives every item a speaker id (multi-speaker synthesis).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from tqdm.auto import tqdm

from rnnseq.data.manifest import Utterance
from rnnseq.data.speech import SpeechDataModule
from rnnseq.data.tokenizer import SPECIALS, CharTokenizer, WordTokenizer

log = logging.getLogger(__name__)

INPUTS = ("phonemes", "characters")


class TTSDataModule(SpeechDataModule):
    """JSONL manifests (or the embedded synthesis corpus) for text-to-speech.

    Args:
        inputs: ``phonemes`` (space-separated IPA symbols with ``|`` between words) or
            ``characters`` (the normalised text).
        phoneme_voice: the espeak-ng voice whose pronunciations fill in missing phonemes.
        **kwargs: as for :class:`~rnnseq.data.speech.SpeechDataModule` (features, batching,
            feature cache, normaliser, ...); waveform augmentation does not apply.
    """

    def __init__(self, inputs: str = "phonemes", phoneme_voice: str = "en-us", **kwargs: Any):
        super().__init__(**kwargs)
        if inputs not in INPUTS:
            raise ValueError(f"data.inputs must be one of {list(INPUTS)}, got {inputs!r}")
        if self.augment_settings.active:
            raise ValueError("data.augment does not apply to speech synthesis: the features are "
                             "what the model must produce; set data.augment=null")
        self.inputs = inputs
        self.symbols = "phonemes" if inputs == "phonemes" else "text"
        self.phoneme_voice = phoneme_voice
        self.speaker_ids: dict[str, int] | None = None

    def _read_split(self, split: str) -> list[Utterance]:
        utts = super()._read_split(split)
        if self.inputs != "phonemes":
            return utts
        missing = [i for i, u in enumerate(utts) if u.phonemes is None]
        if missing:
            from rnnseq.data.builders.espeak import EspeakSynthesizer

            espeak = EspeakSynthesizer.shared()
            for i in tqdm(missing, desc=f"phonemes of {split} ({self.phoneme_voice})",
                          unit="utt", disable=len(missing) < 200):
                utts[i] = replace(utts[i], phonemes=espeak.phoneme_symbols(utts[i].text,
                                                                           self.phoneme_voice))
        return utts

    def _make_tokenizer(self, train: list[Utterance]) -> CharTokenizer | WordTokenizer:
        self.speaker_ids = self._speaker_table(train)
        if self.inputs == "characters":
            return super()._make_tokenizer(train)
        if self.vocabulary is not None:
            return WordTokenizer([*SPECIALS, *(v for v in self.vocabulary if v not in SPECIALS)])
        return WordTokenizer.from_texts(u.phonemes for u in train)

    def _speaker_table(self, train: list[Utterance]) -> dict[str, int] | None:
        named = {u.speaker for u in train if u.speaker is not None}
        if not named:
            return None
        unnamed = sum(u.speaker is None for u in train)
        if unnamed:
            raise ValueError(f"{unnamed} training utterances in {self.manifests['train']} have no "
                             f"speaker while others do; give every line a speaker or none")
        return {name: i for i, name in enumerate(sorted(named))}

    def _speakers(self) -> dict[str, int] | None:
        return self.speaker_ids

    def _check_vocabulary(self, utts: list[Utterance], split: str) -> list[Utterance]:
        utts = super()._check_vocabulary(utts, split)
        if self.speaker_ids is None:
            return utts
        keep = []
        for u in utts:
            if u.speaker in self.speaker_ids:
                keep.append(u)
            else:
                self.report.add(self.manifests[split], None, f"speaker {u.speaker!r} is not a "
                                f"training speaker", id=u.id)
        return keep

    def task_arguments(self) -> dict[str, Any]:
        """The speech arguments plus what the synthesis task needs: the kind of inputs and the
        speaker names (their order gives the ids)."""
        return {**super().task_arguments(), "inputs": self.inputs,
                "phoneme_voice": self.phoneme_voice,
                "speakers": sorted(self.speaker_ids, key=self.speaker_ids.get)
                if self.speaker_ids else None}
