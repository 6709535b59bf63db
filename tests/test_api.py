"""The Python API of trained runs (``from rnnseq import Recognizer, Synthesizer, TextGenerator``):
its doctested examples, and what each call must equal."""

from __future__ import annotations

import contextlib
import doctest
import io
import re
import warnings

import pytest
import torch

import rnnseq
from rnnseq import api
from rnnseq.data.audio import load_audio
from rnnseq.data.manifest import DataReport, read_manifest
from tests.conftest import REPO


@pytest.fixture(scope="module")
def wav_paths(tiny_corpus) -> list[str]:
    return [u.audio_path for u in read_manifest(tiny_corpus["test"], DataReport())[:3]]


def test_the_examples_in_the_api_docstring_run(smoke_run, tts_run, textgen_run, wav_paths):
    with warnings.catch_warnings():  # the tiny tts corpus lacks some letters of the example
        warnings.simplefilter("ignore", UserWarning)
        result = doctest.testmod(api, extraglobs={"asr_run": smoke_run, "tts_run": tts_run,
                                                  "textgen_run": textgen_run,
                                                  "wav_path": wav_paths[0]})
    assert result.attempted >= 8 and result.failed == 0


def test_the_front_pages_python_example_runs(smoke_run, tts_run, textgen_run, wav_paths):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"## From Python\n.*?```python\n(.*?)```", readme, re.S).group(1)
    for study, run in (("asr", smoke_run), ("tts", tts_run), ("textgen", textgen_run)):
        assert f'"experiments/{study}/runs/<time>"' in code
        code = code.replace(f'"experiments/{study}/runs/<time>"', repr(str(run)))
    assert '"speech.wav"' in code
    code = code.replace('"speech.wav"', repr(wav_paths[0]))
    printed = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
        warnings.simplefilter("ignore", UserWarning)  # the tiny tts corpus lacks some letters
        namespace = {}
        exec(compile(code, "README.md (From Python)", "exec"), namespace)
    transcript = namespace["recognizer"].transcribe(wav_paths[0])
    sample = api.TextGenerator.from_run(textgen_run).sample("ROMEO.", 200, seed=1)
    assert printed.getvalue() == f"{transcript}\n{sample}\n"
    assert namespace["speech"].wave.ndim == 1 and namespace["speech"].sample_rate > 0


def test_the_package_exports_the_api_without_importing_it_up_front():
    assert rnnseq.Recognizer is api.Recognizer and rnnseq.TextGenerator is api.TextGenerator
    with pytest.raises(AttributeError, match="no attribute 'Recogniser'"):
        rnnseq.Recogniser  # noqa: B018


def test_a_recognizer_transcribes_files_waveforms_and_lists_alike(smoke_run, wav_paths):
    recognizer = api.Recognizer.from_run(smoke_run, device="cpu", beam_size=2)
    alone = [recognizer.transcribe(path) for path in wav_paths]
    assert recognizer.transcribe(wav_paths) == alone  # batched equals one at a time
    waves = [load_audio(path, recognizer.sample_rate) for path in wav_paths]
    assert recognizer.transcribe(waves[0]) == alone[0]  # a waveform at the model's rate
    texts = [t for _, t, _ in recognizer.transcribe_files(wav_paths, batch_size=2)]
    assert texts == alone
    # the task's own decoding of the same audio, with the same settings
    assert recognizer.task.transcribe_waves(waves) == alone
    settings = dict(recognizer.task.hparams.decoding)
    nbest = recognizer.nbest(wav_paths[0], 2)
    assert nbest[0][0] == alone[0] and len(nbest) <= 2
    assert dict(recognizer.task.hparams.decoding) == settings  # nbest left the settings alone
    with pytest.raises(ValueError, match="nbest needs beam search"):
        api.Recognizer.from_run(smoke_run, device="cpu", mode="greedy").nbest(wav_paths[0], 2)


def test_a_recognizer_resamples_a_waveform_at_another_rate(smoke_run, wav_paths):
    import torchaudio

    recognizer = api.Recognizer.from_run(smoke_run, device="cpu", mode="greedy")
    wave = load_audio(wav_paths[0], recognizer.sample_rate)
    doubled = torchaudio.functional.resample(wave, recognizer.sample_rate,
                                             2 * recognizer.sample_rate)
    resampled = recognizer._wave(doubled, 2 * recognizer.sample_rate)
    assert resampled.shape == wave.shape
    assert float((resampled - wave).abs().max()) < 0.05 * float(wave.abs().max())
    with pytest.raises(ValueError, match="mono waveform"):
        recognizer.transcribe(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="carries its own rate"):  # not silently ignored
        recognizer.transcribe(wav_paths[0], sample_rate=8000)


def test_settings_and_the_kind_of_run_are_checked_when_the_run_is_loaded(smoke_run, tts_run):
    with pytest.raises(ValueError, match="is a SpeechToText run; Synthesizer loads TextToSpeech"):
        api.Synthesizer.from_run(smoke_run, device="cpu")
    with pytest.raises(ValueError, match="beam_sizes"):
        api.Recognizer.from_run(smoke_run, device="cpu", beam_sizes=4)
    with pytest.raises(ValueError, match="stop_threshold"):
        api.Synthesizer.from_run(tts_run, device="cpu", stop_threshold=2.0)
    with pytest.raises(FileNotFoundError):
        api.TextGenerator.from_run(smoke_run.parent / "no-such-run", device="cpu")


def test_a_synthesizer_speaks_alone_as_in_a_batch_and_names_what_it_cannot_say(tts_run):
    synthesizer = api.Synthesizer.from_run(tts_run, device="cpu", seed=3)
    with pytest.warns(UserWarning, match="cannot speak '§'"):
        both = synthesizer.speak_batch(["good night", "a § b"])
    first = synthesizer.speak("good night")
    # a batch pads the shorter text: equal up to float error in the padded sums
    torch.testing.assert_close(first.wave, both[0].wave, atol=1e-4, rtol=1e-3)
    assert first.sample_rate == synthesizer.sample_rate
    assert first.wave.shape == ((first.mel.shape[0] - 1) * synthesizer.task.vocoder.features
                                .hop_length,)
    assert "§" in both[1].unspoken and "§" not in first.unspoken
    with pytest.raises(ValueError, match="the run has one voice"):  # speakers: a one-voice run
        synthesizer.speak("good night", speaker="someone")


def test_a_text_generator_repeats_itself_with_a_seed(textgen_run):
    generator = api.TextGenerator.from_run(textgen_run, device="cpu")
    text = generator.sample("ROMEO", 30, seed=7)
    assert text.startswith("ROMEO") and text == generator.sample("ROMEO", 30, seed=7)
    # settings left out are the run's own (task.generation), not the function's
    saved = dict(generator.task.hparams.generation)
    assert generator.sample("ROMEO", 30, seed=7) == generator.task.generate_text(
        "ROMEO", 30, saved["temperature"], saved["top_k"], saved["top_p"], seed=7)


def test_a_text_generator_scores_a_text_by_its_tokens_log_probabilities(textgen_run):
    import math

    generator = api.TextGenerator.from_run(textgen_run, device="cpu")
    text = "ROMEO and JULIET"
    score = generator.score(text)
    # by hand: every token after the <eos> that starts the line, given the tokens before it
    ids = [generator.task.tokenizer.eos_id, *generator.task.tokenizer.encode(text),
           generator.task.tokenizer.eos_id]
    with torch.no_grad():
        logits = generator.task.model(torch.tensor([ids[:-1]]))[0][0]
    nll = -torch.log_softmax(logits.float(), -1)[range(len(ids) - 1), ids[1:]].sum().item()
    assert score.tokens == len(ids) - 1
    assert score.loss == pytest.approx(nll / score.tokens, rel=1e-4)
    assert score.perplexity == pytest.approx(math.exp(score.loss), rel=1e-6)


def test_changed_decoding_settings_hold_for_their_block_only(smoke_run, wav_paths):
    recognizer = api.Recognizer.from_run(smoke_run, device="cpu", beam_size=3)
    before = dict(recognizer.task.hparams.decoding)
    assert len(recognizer.nbest(wav_paths[0], 2)) == 2  # nbest=2 inside, not after
    assert dict(recognizer.task.hparams.decoding) == before
    with pytest.raises(RuntimeError), recognizer.task.decoding_changed({"beam_size": 5}) as settings:
        assert settings.beam_size == 5 and recognizer.task.decoding.beam_size == 5
        raise RuntimeError("the block fails")
    assert dict(recognizer.task.hparams.decoding) == before
    with pytest.raises(ValueError, match="unknown decoding settings"):
        with recognizer.task.decoding_changed({"beam": 5}):
            pass
    assert dict(recognizer.task.hparams.decoding) == before
