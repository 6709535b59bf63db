"""Spoken commands: the embedded corpus of single words spoken by espeak-ng voices, and a reader
for the directory layout of Google Speech Commands (torchaudio's ``SPEECHCOMMANDS``).

Both give JSONL manifests whose ``text`` is the label, for ``data.targets: label``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from rnnseq.data.builders.espeak import Voice
from rnnseq.data.builders.speech_corpus import SPLIT_NAMES, EspeakCorpus, settings_digest
from rnnseq.data.manifest import write_manifest

log = logging.getLogger(__name__)

# The 35 words of Speech Commands v2.
COMMAND_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "down", "eight", "five", "follow", "forward", "four",
    "go", "happy", "house", "learn", "left", "marvin", "nine", "no", "off", "on", "one", "right",
    "seven", "sheila", "six", "stop", "three", "tree", "two", "up", "visual", "wow", "yes", "zero",
)
# Validation and test speakers are voice variants that training never hears (and differ from
# each other), so that choosing the checkpoint on validation says something about new voices.
TRAIN_VOICES = ("en-us", "en", "en+m3", "en-us+f2", "en-gb-scotland", "en-gb-x-rp", "en-029",
                "en-us+m1", "en-us+f4", "en+m4", "en-us+f1", "en+f2")
VALID_VOICES = ("en-us+f3", "en+m6")
TEST_VOICES = ("en-us+m7", "en-us+f5", "en-gb-x-gbclan")
COMMANDS_FORMAT = 3  # bump when the same settings would build another corpus (3: blocks of synthesis)


@dataclass
class CommandsSettings:
    """Everything that determines the commands corpus (its hash names the cache folder)."""

    words: list[str] = field(default_factory=lambda: list(COMMAND_WORDS))
    per_word: dict[str, int] = field(default_factory=lambda: {"train": 60, "valid": 6, "test": 8})
    voices: list[str] = field(default_factory=lambda: list(TRAIN_VOICES))
    valid_voices: list[str] = field(default_factory=lambda: list(VALID_VOICES))
    test_voices: list[str] = field(default_factory=lambda: list(TEST_VOICES))
    rate: tuple[int, int] = (120, 240)
    test_rate: tuple[int, int] = (110, 260)  # a little beyond the training range at both ends
    pitch: tuple[int, int] = (20, 80)
    sample_rate: int = 16000
    seed: int = 0

    def digest(self) -> str:
        """A short hash of every setting: the name of the corpus's cache folder."""
        return settings_digest(self, COMMANDS_FORMAT)


class EspeakCommands(EspeakCorpus):
    """Single command words, ``per_word[split]`` utterances of each word per split.

    Training uses ``voices`` at rates in ``rate``; validation ``valid_voices`` and the test split
    ``test_voices`` (variants never heard in training), at rates in ``test_rate``.
    """

    settings_class = CommandsSettings

    def __init__(self, cache_dir: str = "data", name: str = "commands",
                 num_workers: int | None = None, **settings):
        super().__init__(cache_dir, name, num_workers, **settings)
        s = self.settings
        if len(set(s.words)) != len(s.words) or not s.words:
            raise ValueError("data.corpus.words must be a non-empty list of distinct words")
        for a, b in (("voices", "valid_voices"), ("voices", "test_voices"),
                     ("valid_voices", "test_voices")):
            shared = set(getattr(s, a)) & set(getattr(s, b))
            if shared:
                raise ValueError(f"voices {sorted(shared)} are in both data.corpus.{a} and "
                                 f"data.corpus.{b}")

    def _texts(self) -> dict[str, list[str]]:
        return {split: [w for _ in range(self.settings.per_word.get(split, 0))
                        for w in self.settings.words] for split in SPLIT_NAMES}

    def _voice_for(self, utt_id: str, split: str) -> Voice:
        voice = super()._voice_for(utt_id, split)
        if split == "train":
            return voice
        voices = self.settings.valid_voices if split == "valid" else self.settings.test_voices
        rng = random.Random(f"{self.settings.seed}/{split}-voice/{utt_id}")
        return Voice(rng.choice(voices), rate=rng.randint(*self.settings.test_rate),
                     pitch=voice.pitch)


class SpeechCommandsFolder:
    """Manifests for a Speech Commands folder laid out as torchaudio's ``SPEECHCOMMANDS`` keeps it:
    ``<root>/<label>/<speaker>_nohash_<n>.wav``, with ``validation_list.txt`` and
    ``testing_list.txt`` naming the held-out files (paths relative to ``root``); every other file
    is training data. ``_background_noise_`` is not a label.

    Args:
        root: the dataset folder (e.g. ``.../SpeechCommands/speech_commands_v0.02``).
        out_dir: where the manifests are written (default: ``<root>/manifests``).
    """

    def __init__(self, root: str, out_dir: str | None = None):
        self.root = Path(root)
        self.out_dir = Path(out_dir) if out_dir else self.root / "manifests"

    def build(self) -> dict[str, str]:
        """Writes the train, valid and test manifests (once); returns ``{split: path}``."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"Speech Commands folder {self.root} does not exist; set "
                                    f"data.corpus.root to the folder that holds one folder per word")
        held = {split: self._list(name) for split, name in
                (("valid", "validation_list.txt"), ("test", "testing_list.txt"))}
        entries: dict[str, list[dict]] = {split: [] for split in SPLIT_NAMES}
        for wav in sorted(self.root.glob("*/*.wav")):
            label = wav.parent.name
            if label.startswith("_"):
                continue
            relative = f"{label}/{wav.name}"
            split = next((s for s, names in held.items() if relative in names), "train")
            try:
                duration = soundfile.info(wav).duration
            except Exception:  # the datamodule reports unreadable files by name
                duration = 1.0
            entries[split].append({"id": relative.removesuffix(".wav"), "audio_filepath": str(wav),
                                   "duration": round(duration, 3), "text": label})
        if not entries["train"]:
            raise ValueError(f"no <label>/<file>.wav training files under {self.root}")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for split in SPLIT_NAMES:
            paths[split] = str(self.out_dir / f"{split}.jsonl")
            write_manifest(paths[split], entries[split])
        log.info("Speech Commands manifests in %s: %s", self.out_dir,
                 {s: len(e) for s, e in entries.items()})
        return paths

    def _list(self, name: str) -> set[str]:
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a Speech Commands folder lists its "
                                    f"validation and test files in validation_list.txt and "
                                    f"testing_list.txt")
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}
