"""Speech synthesis with the espeak-ng library bundled by the PyPI package ``espeakng-loader``.

The library keeps global state, so there is one :class:`EspeakSynthesizer` per process
(:meth:`~EspeakSynthesizer.shared`), and :meth:`~EspeakSynthesizer.fresh` ones, each with a
private copy of the library, for audio that must not depend on what was spoken before.
"""

from __future__ import annotations

import _ctypes
import ctypes
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnseq.resources import c_library_function

_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: AUDIO_OUTPUT_SYNCHRONOUS
_RATE, _PITCH, _RANGE, _WORDGAP = 1, 3, 4, 7  # espeak_PARAMETER ids
# espeak_TextToPhonemes: text mode 1 (UTF-8); phoneme mode bit 1 = IPA, bits 8-23 = separator.
_UTF8_TEXT = 1
WORD_BOUNDARY = "|"  # between the words of phoneme_symbols()
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice with its speaking style.

    Args:
        name: voice and optional variant, e.g. ``"en-us+f2"`` or ``"en+m3"``.
        rate: words per minute (espeak's default is 175).
        pitch: base pitch, 0-100 (default 50).
        pitch_range: pitch range, 0-100 (default 50; 0 is a monotone).
        word_gap: extra pause between words, in units of 10 ms (default 0).
    """

    name: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    word_gap: int = 0


def _seed_c_library(seed: int) -> None:
    """Seeds the C library's process-wide ``rand()``, which other libraries in the process may
    draw from too: set right before the synthesis that reads it."""
    srand = c_library_function("srand")
    if srand is not None:
        srand(ctypes.c_uint(seed & 0xFFFFFFFF))


class EspeakError(RuntimeError):
    """espeak-ng refused a request; the message names the voice or text."""


class EspeakSynthesizer:
    """Text to speech samples: ``synthesize(text, voice) -> (N,) float32`` at :attr:`sample_rate`."""

    _instance: EspeakSynthesizer | None = None

    def __init__(self, private: bool = False):
        import espeakng_loader

        library = espeakng_loader.get_library_path()
        self._copy: Path | None = None
        if private:
            # espeak-ng keeps state in static variables that neither espeak_Terminate nor a new
            # espeak_Initialize resets; a copy of the library under another path loads as an object
            # of its own, with its own statics
            self._copy = Path(tempfile.mkdtemp(prefix="rnnseq-espeak-"))
            library = shutil.copy(library, self._copy / Path(library).name)
        self._lib = ctypes.CDLL(str(library))
        data_path = espeakng_loader.get_data_path().encode()
        rate = self._lib.espeak_Initialize(_SYNCHRONOUS, 0, data_path, 0)
        if rate <= 0:
            raise EspeakError(f"espeak_Initialize failed (returned {rate}); data path {data_path!r}")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        # Keep a reference to the callback: ctypes frees it otherwise and the library crashes.
        self._callback = _SYNTH_CALLBACK(self._collect)
        self._lib.espeak_SetSynthCallback(self._callback)
        self._lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self._lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self._lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int,
        ]
        self._voice: str | None = None

    @classmethod
    def shared(cls) -> EspeakSynthesizer:
        """The process-wide synthesiser (espeak-ng allows one per loaded library)."""
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    @classmethod
    def fresh(cls) -> EspeakSynthesizer:
        """A synthesiser in espeak-ng's initial state, apart from :meth:`shared` and every other:
        what it speaks does not depend on what was spoken before it was made. Use it in a ``with``
        block (or :meth:`close` it), which unloads its private copy of the library."""
        return cls(private=True)

    def close(self) -> None:
        """Ends a :meth:`fresh` synthesiser: espeak-ng's memory freed, its library unloaded."""
        if self._copy is None:
            return
        self._lib.espeak_Terminate()
        unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary", None)
        if unload is not None:
            unload(self._lib._handle)
        shutil.rmtree(self._copy, ignore_errors=True)
        self._copy = None

    def __enter__(self) -> EspeakSynthesizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _collect(self, wav, num_samples, _events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # 0 = continue synthesis

    def set_voice(self, voice: Voice) -> None:
        """Selects an espeak-ng voice (``en-us``, ``en+f2``, ...) for the next utterances."""
        if voice.name != self._voice:
            status = self._lib.espeak_SetVoiceByName(voice.name.encode())
            if status != 0:
                raise EspeakError(f"espeak-ng has no voice {voice.name!r} (error {status})")
            self._voice = voice.name
        # Rate and pitch must be set after the voice, which resets them.
        for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.pitch_range),
                             (_WORDGAP, voice.word_gap)):
            self._lib.espeak_SetParameter(param, int(value), 0)

    def synthesize(self, text: str, voice: Voice, seed: int = 0) -> np.ndarray:
        """``text`` spoken by ``voice``: ``(N,)`` float32 samples in [-1, 1]. ``seed`` draws the
        noise that breathy and Klatt voices mix in (espeak-ng would seed it from the clock, and
        its Klatt voice 6 reads the C library's ``rand()``, whose state the whole process shares).
        Pitch flutter carries over from what this synthesiser spoke before, so only one that
        speaks the same utterances in the same order repeats its samples (see :meth:`fresh`)."""
        self.set_voice(voice)
        self._lib.espeak_ng_SetRandSeed(seed)
        _seed_c_library(seed)  # Klatt voice 6 (espeak-ng's speechPlayer) draws from rand()
        self._chunks = []
        encoded = text.encode("utf-8")
        status = self._lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None)
        if status != 0:
            raise EspeakError(f"espeak_Synth failed with error {status} for text {text!r}")
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self._chunks).astype(np.float32) / 32768.0

    def phonemes(self, text: str, voice: str = "en-us") -> str:
        """IPA phonemes of ``text`` separated by spaces, stress marks joined to their vowel:
        ``"hello" -> "h ə l ˈoʊ"``. Clauses are joined with spaces; empty text gives ``""``."""
        return " ".join(" ".join(c.split()) for c in self.phoneme_clauses(text, voice))

    def phoneme_symbols(self, text: str, voice: str = "en-us") -> str:
        """IPA phonemes of ``text`` separated by spaces, with ``WORD_BOUNDARY`` between words (and
        clauses): ``"hello world" -> "h ə l ˈoʊ | w ˈɜː l d"``, the input of speech synthesis,
        which needs to know where words end."""
        words = [word.split("_") for clause in self.phoneme_clauses(text, voice, separator="_")
                 for word in clause.split()]
        return f" {WORD_BOUNDARY} ".join(" ".join(p for p in word if p) for word in words)

    def phoneme_clauses(self, text: str, voice: str = "en-us", separator: str = " ") -> list[str]:
        """IPA of each clause of ``text`` (espeak-ng drops the punctuation between them), with
        ``separator`` between the phonemes of a word (``""``: none) and spaces between words."""
        if voice != self._voice:
            self.set_voice(Voice(voice))
        mode = ((ord(separator) << 8) | 0x02) if separator else 0x02  # bit 1: IPA
        encoded = ctypes.c_char_p(text.encode("utf-8"))
        pointer = ctypes.pointer(encoded)
        clauses = []
        # Each call converts one clause and advances the pointer; it becomes NULL at the end.
        while pointer.contents.value:
            result = self._lib.espeak_TextToPhonemes(pointer, _UTF8_TEXT, mode)
            if result and result.strip():
                clauses.append(result.decode("utf-8").strip())
        return clauses
