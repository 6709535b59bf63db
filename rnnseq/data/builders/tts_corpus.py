"""The embedded speech synthesis corpus: one espeak-ng voice reading the speech corpus's text.

A synthesis model learns one speaker, so every utterance has the same voice, rate and pitch, and
its leading and trailing silence is trimmed (the model would otherwise have to learn when
silence ends). The sentences are chosen exactly as the speech corpus chooses them (same text
sources, same held-out documents: :meth:`EspeakSpeechCorpus.select_sentences`), and every
manifest entry also holds the voice's IPA ``phonemes``, for models that read phonemes instead of
letters.

Splits: ``train``, ``valid`` and ``test`` as in the speech corpus, and ``test_long``: sentences
of the test documents with more words than any training sentence (the classic failure of
attention synthesis is to skip or repeat on inputs longer than it was trained on).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rnnseq.data.builders.espeak import Voice
from rnnseq.data.builders.speech_corpus import (
    SPLIT_NAMES,
    EspeakCorpus,
    EspeakSpeechCorpus,
    SentenceSettings,
    settings_digest,
)

TTS_FORMAT = 2  # bump when the same settings would build a different corpus (2: blocks of synthesis)


@dataclass
class TTSCorpusSettings(SentenceSettings):
    """Everything that determines the synthesis corpus (its hash names the cache folder)."""

    num_utterances: dict[str, int] = field(
        default_factory=lambda: {"train": 3000, "valid": 100, "test": 200, "test_long": 50})
    min_words: int = 3
    max_words: int = 10
    long_words: tuple[int, int] = (14, 24)  # words per test_long sentence
    voice: str = "en-us"
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    trim_db: float = 40.0
    sample_rate: int = 16000
    seed: int = 0

    def digest(self) -> str:
        """A short hash of every setting: the name of the corpus's cache folder."""
        return settings_digest(self, TTS_FORMAT)


class EspeakTTSCorpus(EspeakCorpus):
    """One espeak-ng voice (``voice`` at ``rate`` words per minute, ``pitch``, ``pitch_range``)
    reading ``num_utterances`` sentences per split.

    Args:
        cache_dir, name, num_workers: as for :class:`EspeakSpeechCorpus`.
        text_source, valid_documents, test_documents, extra_source, extra_share, min_words, max_words: the
            speech corpus's text settings (the same sentences for the same settings and seed).
        num_utterances: ``{"train", "valid", "test", "test_long"}`` counts.
        long_words: ``[low, high]`` words of a ``test_long`` sentence; ``low`` must exceed
            ``max_words``.
        trim_db: leading and trailing audio quieter than this many dB below the loudest 10 ms is
            cut (20 ms kept at each end).
    """

    settings_class = TTSCorpusSettings

    def __init__(self, cache_dir: str = "data", name: str = "espeak_tts",
                 num_workers: int | None = None, **settings):
        super().__init__(cache_dir, name, num_workers, **settings)
        s = self.settings
        unknown = set(s.num_utterances) - {*SPLIT_NAMES, "test_long"}
        if unknown:
            raise ValueError(f"data.corpus.num_utterances has unknown split(s) {sorted(unknown)}; "
                             f"choose from {[*SPLIT_NAMES, 'test_long']}")
        low, high = s.long_words
        if s.num_utterances.get("test_long", 0) > 0 and not s.max_words < low <= high:
            raise ValueError(f"data.corpus.long_words {list(s.long_words)} must lie above "
                             f"max_words={s.max_words}: test_long holds sentences longer than "
                             f"any in training")

    def split_names(self) -> tuple[str, ...]:
        long = ("test_long",) if self.settings.num_utterances.get("test_long", 0) > 0 else ()
        return (*SPLIT_NAMES, *long)

    def _voice_for(self, utt_id: str, split: str) -> Voice:
        s = self.settings
        return Voice(s.voice, rate=s.rate, pitch=s.pitch, pitch_range=s.pitch_range)

    def _job_options(self) -> dict:
        return {"trim_db": self.settings.trim_db, "phonemes": True}

    def _sentences(self, num_utterances: dict[str, int], min_words: int,
                   max_words: int) -> dict[str, list[str]]:
        s = self.settings
        text = EspeakSpeechCorpus(
            cache_dir=str(self.cache_dir), text_source=s.text_source,
            valid_documents=s.valid_documents, test_documents=s.test_documents,
            extra_source=s.extra_source, extra_share=s.extra_share if s.extra_source else 0.0,
            test_text_documents=[], num_utterances=num_utterances, min_words=min_words,
            max_words=max_words, neural_share=0.0, test_engine_voices=[], seed=s.seed)
        return text.select_sentences()

    def _texts(self) -> dict[str, list[str]]:
        s = self.settings
        counts = {k: s.num_utterances.get(k, 0) for k in SPLIT_NAMES}
        chosen = self._sentences(counts, s.min_words, s.max_words)
        wanted_long = s.num_utterances.get("test_long", 0)
        if wanted_long > 0:
            # the held-out test documents again, in the long word range (no training sentences)
            chosen["test_long"] = self._sentences({"train": 0, "valid": 0, "test": wanted_long},
                                                  *s.long_words)["test"]
        return chosen
