"""The Python API of trained runs: recognise speech, speak text, continue text.

Each class loads a run folder (its best checkpoint) or a checkpoint file, on ``device``
(``auto``: the first GPU where CUDA is available, else the CPU), and keeps the model:

>>> from rnnseq import Recognizer, Synthesizer, TextGenerator
>>> recognizer = Recognizer.from_run(asr_run, device="cpu", beam_size=4)
>>> isinstance(recognizer.transcribe(wav_path), str)
True
>>> len(recognizer.transcribe([wav_path, wav_path]))
2
>>> [text for text, score in recognizer.nbest(wav_path, 2)] == recognizer.nbest_texts(wav_path, 2)
True
>>> speech = Synthesizer.from_run(tts_run, device="cpu").speak("Hello there.")
>>> speech.sample_rate, speech.wave.dim()
(16000, 1)
>>> TextGenerator.from_run(textgen_run, device="cpu").sample("ROMEO", 20, seed=1).startswith("ROMEO")
True

The command lines (``rnnseq.transcribe``, ``rnnseq.synthesize``, ``rnnseq.generate``) are
argument parsing around these calls.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import torch

from rnnseq.checkpoints import load_task
from rnnseq.data.audio import load_audio
from rnnseq.data.batching import Example, collate_examples
from rnnseq.tasks.base import Task
from rnnseq.tasks.language_model import LanguageModel
from rnnseq.tasks.speech_to_text import SpeechToText
from rnnseq.tasks.text_to_speech import TextToSpeech

Audio = str | Path | torch.Tensor


class _FromRun:
    """A trained model of one task class (:attr:`TASK`), loaded from its run."""

    TASK: type = Task
    SETTINGS: str | None = None  # the task's method that takes the keyword settings

    def __init__(self, task):
        self.task = task

    @classmethod
    def from_run(cls, run: str | Path, device: str = "auto", **settings):
        """The model of a run folder or checkpoint (its best checkpoint) on ``device``, with
        ``settings`` changes; a run of another task is a ``ValueError`` naming it."""
        from rnnseq.checkpoints import find_checkpoint
        from rnnseq.runs import task_class_for

        task_class = task_class_for(find_checkpoint(run))
        if not issubclass(task_class, cls.TASK):
            raise ValueError(f"{run} is a {task_class.__name__} run; {cls.__name__} loads "
                             f"{cls.TASK.__name__} runs")
        if settings and cls.SETTINGS is None:
            raise TypeError(f"{cls.__name__}.from_run takes no settings, got {sorted(settings)}")
        task = load_task(task_class, run, device)
        if cls.SETTINGS is not None:
            getattr(task, cls.SETTINGS)(settings)
        return cls(task)


class _AudioModel(_FromRun):
    """A trained model that hears or makes audio."""

    @property
    def sample_rate(self) -> int:
        """The sample rate of the audio the model hears or makes."""
        return int(self.task.hparams.features["sample_rate"])


class Recognizer(_AudioModel):
    """A trained speech recogniser (``experiment=asr`` and its recipes).

    The settings ``from_run`` takes are ``task.decoding`` keys (``mode``, ``beam_size``,
    ``ctc_weight``, ``lm``, ``lm_weight``, ...); an unknown key or one that cannot apply is a
    ``ValueError`` naming it. Audio is a file path (any format soundfile reads, resampled to the
    model's rate) or an ``(N,)`` waveform at ``sample_rate`` (default: the model's).
    """

    TASK, SETTINGS = SpeechToText, "set_decoding"

    def _wave(self, audio: Audio, sample_rate: int | None) -> torch.Tensor:
        if isinstance(audio, (str, Path)):
            if sample_rate is not None:
                raise ValueError(f"sample_rate={sample_rate} is for waveforms; {audio} carries its "
                                 f"own rate (drop sample_rate)")
            return load_audio(str(audio), self.sample_rate)
        wave = torch.as_tensor(audio, dtype=torch.float32)
        if wave.dim() != 1:
            raise ValueError(f"expected an (N,) mono waveform, got shape {tuple(wave.shape)}")
        rate = sample_rate or self.sample_rate
        if rate != self.sample_rate:
            import torchaudio

            wave = torchaudio.functional.resample(wave, rate, self.sample_rate)
        return wave

    @torch.no_grad()
    def transcribe(self, audio: Audio | Sequence[Audio], sample_rate: int | None = None,
                   batch_size: int = 8) -> str | list[str]:
        """The transcript of one file or waveform, or the list of transcripts of a list of them
        (decoded ``batch_size`` at a time), with the decoding settings."""
        if isinstance(audio, (list, tuple)):
            waves = [self._wave(a, sample_rate) for a in audio]
            return self.task.transcribe_waves(waves, batch_size)
        return self.task.transcribe_waves([self._wave(audio, sample_rate)])[0]

    @torch.no_grad()
    def nbest(self, audio: Audio, n: int, sample_rate: int | None = None) -> list[tuple[str, float]]:
        """The ``n`` best ``(transcript, score)`` pairs of beam search, best first (the settings'
        ``decoding.mode`` must be ``beam`` or ``ctc_beam``). The score is the hypothesis's
        total weighted log-score; the ranking divides it by ``(tokens + 1) ** length_penalty``."""
        if not self.task.decoding.beam_search:
            raise ValueError(f"nbest needs beam search; this recogniser decodes with "
                             f"decoding.mode={self.task.decoding.mode} (from_run(..., mode='beam'))")
        with self.task.decoding_changed({"nbest": n}):
            batch = self.task.waves_batch([self._wave(audio, sample_rate)])
            hypotheses = self.task.beam_hypotheses(batch)[0]
        return [(self.task.tokenizer.decode(h.tokens), float(h.score)) for h in hypotheses]

    @torch.no_grad()
    def transcribe_files(self, paths: Sequence[str | Path], batch_size: int = 8
                         ) -> Iterator[tuple[str, str | None, str | None]]:
        """Yields ``(path, transcript, None)`` for every file, in order, or ``(path, None,
        error)`` for a file that cannot be read (the others are still transcribed)."""
        from rnnseq.data.audio import AudioError

        for start in range(0, len(paths), batch_size):
            group = [str(p) for p in paths[start:start + batch_size]]
            waves, errors = {}, {}
            for path in group:
                try:
                    waves[path] = load_audio(path, self.sample_rate)
                except (AudioError, OSError) as err:
                    errors[path] = str(err)
            texts = dict(zip(waves, self.task.transcribe_waves(list(waves.values()), batch_size)))
            for path in group:
                yield path, texts.get(path), errors.get(path)

    def nbest_texts(self, audio: Audio, n: int, sample_rate: int | None = None) -> list[str]:
        """The transcripts of :meth:`nbest`, best first."""
        return [text for text, _ in self.nbest(audio, n, sample_rate)]


class Speech(NamedTuple):
    """One synthesised text, as CPU tensors."""

    text: str
    wave: torch.Tensor  # (N,) samples in [-1, 1] from the run's vocoder, N = (T - 1) * hop
    sample_rate: int
    mel: torch.Tensor  # (T, F) log-mel frames up to the stop
    attention: torch.Tensor  # (T', S) weights of each decoder step over the input symbols
    stopped: bool  # False where the frame limit ended it
    unspoken: list[str]  # what of the text the model could not say (dropped, or read as <unk>)


class Synthesizer(_AudioModel):
    """A trained speech synthesiser (``experiment=tts``).

    The settings ``from_run`` takes are ``task.synthesis`` keys (``stop_threshold``, ``window``,
    ``max_length_ratio``, ``seed``). Text goes through the run's front end (numbers and
    abbreviations said in words, :mod:`rnnseq.data.spoken`); what still cannot be said is in
    :attr:`Speech.unspoken` and in a warning.
    """

    TASK, SETTINGS = TextToSpeech, "set_synthesis"

    @property
    def speakers(self) -> list[str]:
        """The speaker names of a multi-speaker run (empty for one voice)."""
        return list(self.task.hparams.speakers or [])

    def speak(self, text: str, speaker: str | None = None) -> Speech:
        """``text`` synthesised (``speaker``: one of :attr:`speakers`, for a multi-speaker run)."""
        return self.speak_batch([text], speaker)[0]

    def speak_batch(self, texts: Sequence[str], speaker: str | Sequence[str] | None = None,
                    batch_size: int = 8) -> list[Speech]:
        """Every text synthesised, ``batch_size`` at a time, in order; ``speaker``: one name for
        all texts, or one per text."""
        return list(self.speak_each(texts, speaker, batch_size))

    def speak_each(self, texts: Sequence[str], speaker: str | Sequence[str] | None = None,
                   batch_size: int = 8, ids: Sequence[str] | None = None) -> Iterator[Speech]:
        """:meth:`speak_batch` one :class:`Speech` at a time, as each batch is done (for long
        lists); ``ids`` name the texts in warnings and errors (default: their positions)."""
        speakers = [speaker] * len(texts) if speaker is None or isinstance(speaker, str) else speaker
        ids = [str(i) for i in range(len(texts))] if ids is None else list(ids)
        if not len(speakers) == len(ids) == len(texts):
            raise ValueError(f"{len(texts)} texts but {len(speakers)} speakers and {len(ids)} ids")
        requests = [{"id": i, "text": t, "speaker": s} for i, t, s in zip(ids, texts, speakers)]
        return _synthesize(self.task, requests, batch_size)


@torch.no_grad()
def _synthesize(task: TextToSpeech, requests: list[dict], batch_size: int) -> Iterator[Speech]:
    """Yields a :class:`Speech` for every request (``{"id", "text", "speaker"}``), in order; a
    request with text the model cannot fully say gives a warning naming it."""
    speakers = task.hparams.speakers
    rate = int(task.hparams.features["sample_rate"])
    for start in range(0, len(requests), batch_size):
        group = requests[start:start + batch_size]
        examples, unspoken = [], []
        for request in group:
            symbols = task.input_symbols(request["text"])
            missing = task.unspeakable(request["text"], symbols)
            if missing:
                warnings.warn(f"{request['id']}: cannot speak "
                              f"{', '.join(repr(c) for c in missing)} (dropped, or read as <unk>)",
                              stacklevel=2)
            unspoken.append(missing)
            # host: a host batch, moved to the task's device below
            tokens = torch.tensor(task.tokenizer.encode(symbols), dtype=torch.long)
            speaker = None
            if speakers:
                if request["speaker"] not in speakers:
                    raise ValueError(f"{request['id']}: speaker {request['speaker']!r} is not one "
                                     f"of the run's speakers {speakers}; give one of them")
                speaker = speakers.index(request["speaker"])
            elif request.get("speaker") is not None:
                raise ValueError(f"{request['id']}: speaker {request['speaker']!r} given, but the "
                                 f"run has one voice; give no speaker")
            no_frames = torch.zeros(1, task.n_mels)  # host: as above
            examples.append(Example(request["id"], no_frames, tokens, request["text"], speaker))
        batch = task.transfer_batch_to_device(collate_examples(examples), task.device, 0)
        result = task.synthesize_batch(batch)
        steps = -(-result.lengths // task.model.reduction)
        for i, request in enumerate(group):
            mel = task.denormalize(result.mel[i, :int(result.lengths[i])]).float()
            attention = result.attention[i, :int(steps[i]), :len(examples[i].tokens) + 1]
            wave = task.vocoder(mel)  # on the task's device
            yield Speech(request["text"], wave.cpu(), rate, mel.cpu(), attention.float().cpu(),
                         bool(result.stopped[i]), unspoken[i])


class TextGenerator(_FromRun):
    """A trained language model (``experiment=textgen``, ``asr_lm``); ``from_run`` takes no
    settings (``sample`` does)."""

    TASK = LanguageModel

    def sample(self, prompt: str = "", length: int | None = None,
               temperature: float | None = None, top_k: int | None = None,
               top_p: float | None = None, seed: int | None = None) -> str:
        """The prompt followed by ``length`` sampled tokens (``<eos>`` as line breaks):
        ``temperature`` 0 is greedy, ``top_k`` 0 and ``top_p`` 1 are off; ``seed`` None draws
        a fresh one. Settings left out are the run's (``task.generation``)."""
        saved = self.task.hparams.generation
        given = {"length": length, "temperature": temperature, "top_k": top_k, "top_p": top_p}
        chosen = {k: saved[k] if v is None else v for k, v in given.items()}
        return self.task.generate_text(prompt, chosen["length"], chosen["temperature"],
                                       chosen["top_k"], chosen["top_p"], seed=seed)

    def score(self, text: str):
        """How well the model predicts ``text``: its ``loss`` in nats per token, ``perplexity``,
        ``bits_per_char`` (characters models) and the number of ``tokens``."""
        return self.task.score_text(text)
