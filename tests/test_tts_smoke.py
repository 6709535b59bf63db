"""experiment=tts through the CLI on a tiny corpus and model, then rnnseq.synthesize on the run."""

import io
import json
import warnings

import numpy as np
import pytest
import soundfile
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnseq import metrics as M
from rnnseq.synthesize import main as synthesize_main
from tests.conftest import TINY_TTS
from tests.test_train_smoke import run_module, run_train
from tests.test_tts_data import two_speaker_manifests

# `tts_run` (tests/conftest.py): experiment=tts, a tiny model, fast_dev_run=2, heard by smoke_run


def assert_wav_is(path, wave: torch.Tensor) -> None:
    """The 16-bit wav at ``path`` is ``wave`` as rnnseq.synthesize quantises it (clamped, through
    soundfile), within one step either way, and not silent."""
    quantised = io.BytesIO()
    soundfile.write(quantised, wave.clamp(-1, 1).cpu().numpy(), 16000, subtype="PCM_16",
                    format="WAV")
    quantised.seek(0)
    expected = soundfile.read(quantised, dtype="int16")[0].astype(np.int32)
    written, rate = soundfile.read(path, dtype="int16")
    assert rate == 16000 and written.shape == expected.shape
    assert np.abs(written.astype(np.int32) - expected).max() <= 1
    assert np.sqrt(np.mean((written / 32768) ** 2)) > 1e-3


def synthesize_directly(task, text: str, speaker: int | None = None):
    """``(mel, wave)`` of ``text`` from the task's own synthesis and vocoder, on the task's
    device, with the speaker index given here rather than looked up by rnnseq.synthesize."""
    from rnnseq.data.batching import Example, collate_examples

    tokens = torch.tensor(task.tokenizer.encode(task.input_symbols(text)), dtype=torch.long)
    batch = collate_examples([Example("x", torch.zeros(1, task.n_mels), tokens, text, speaker)])
    batch = task.transfer_batch_to_device(batch, task.device, 0)
    result = task.synthesize_batch(batch)
    mel = task.denormalize(result.mel[0, :int(result.lengths[0])]).float()
    return mel, task.vocoder(mel)


def test_a_quick_run_writes_losses_free_running_scores_and_audio_summaries(tts_run):
    results = json.loads((tts_run / "results.json").read_text())
    heard = {f"test/{kind}_{rate}" for kind in ("synthesis", "copy", "recording")
             for rate in ("cer", "wer")}
    assert set(results["test"]) == {M.TEST_MCD, M.TEST_STOPPED, M.TEST_LENGTH_RATIO,
                                    M.TEST_FOCUS_RATE, "test/vocoded_mcd", "test/copy_mcd", *heard}
    assert set(results["test_long"]) == {f"test_long/{m.split('/')[1]}" for m in results["test"]}
    items = json.loads((tts_run / "test_outputs.json").read_text())["items"]
    assert len(items) == results["test_items"] == 4
    assert results["test"][M.TEST_STOPPED] == sum(i["stopped"] for i in items) / 4
    accumulator = EventAccumulator(str(tts_run / "tensorboard"),
                                   size_guidance={"images": 0, "audio": 0})
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {M.TRAIN_MEL_LOSS, M.TRAIN_STOP_LOSS, M.TRAIN_GUIDED_ATTENTION_LOSS, M.VAL_LOSS,
            M.VAL_POSTNET_LOSS} <= scalars
    images, audio = accumulator.Tags()["images"], accumulator.Tags()["audio"]
    assert sum(t.endswith("/mel_teacher_forced") for t in images) == 3
    assert sum(t.endswith("/attention_free_running") for t in images) == 3
    assert sum(t.endswith("/audio_teacher_forced") for t in audio) == 3


def test_the_round_trip_scores_what_the_recogniser_hears_in_each_version(tts_run, smoke_run,
                                                                        data_dir):
    import jiwer

    results = json.loads((tts_run / "results.json").read_text())
    items = json.loads((tts_run / "test_outputs.json").read_text())["items"]
    for kind in ("synthesis", "copy", "recording"):
        hypotheses = [i[f"{kind}_transcript"] for i in items]
        references = [i["reference_text"] for i in items]
        assert results["test"][f"test/{kind}_cer"] == pytest.approx(
            jiwer.cer(references, hypotheses), abs=1e-6)
    # the recording's transcript is what rnnseq.transcribe makes of the same file
    manifest = next((data_dir).glob("espeak_tts-tiny-*/test.jsonl"))
    first = json.loads(manifest.read_text().splitlines()[0])
    audio = manifest.parent / first["audio_filepath"]
    out = run_module("rnnseq.transcribe", data_dir, f"run={smoke_run}", str(audio)).stdout
    item = next(i for i in items if i["id"] == first["id"])
    assert out.rstrip("\n").partition("\t")[2] == item["recording_transcript"]


def test_synthesize_writes_readable_wavs_and_a_manifest(tts_run, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as this process: the same sums, the same audio
    out = tmp_path / "spoken"
    result = run_module("rnnseq.synthesize", data_dir, f"run={tts_run}", "good night",
                        "sweet prince", "--out", str(out), "synthesis.seed=3")
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == [
        str(out / "001.wav"), str(out / "002.wav")]
    # the wav is the in-process synthesis of the same text and seed, in 16 bit, and not silent
    from rnnseq.api import Synthesizer

    # on the device the CLI picks, as the vocoder's phase
    synthesizer = Synthesizer.from_run(tts_run, seed=3)
    with warnings.catch_warnings():  # symbols the tiny corpus never had, as the CLI said too
        warnings.filterwarnings("ignore", ".: cannot speak", UserWarning)
        spoken = synthesizer.speak_batch(["good night", "sweet prince"])
    for i, name in enumerate(["001", "002"]):
        assert_wav_is(out / f"{name}.wav", spoken[i].wave)
    wave = soundfile.read(out / "001.wav")[0]
    again = tmp_path / "again"
    manifest = tmp_path / "lines.jsonl"
    manifest.write_text('{"id": "a", "text": "good night"}\n{"id": "b", "text": "to sleep"}\n')
    run_module("rnnseq.synthesize", data_dir, f"run={tts_run}", "--manifest", str(manifest),
               "--out", str(again), "synthesis.seed=3")
    assert (soundfile.read(again / "a.wav")[0] == wave).all()  # same text and seed, same audio
    lines = [json.loads(x) for x in (again / "manifest.jsonl").read_text().splitlines()]
    assert [x["text"] for x in lines] == ["good night", "to sleep"]


def test_a_multi_speaker_manifest_trains_a_speaker_embedding_that_synthesize_selects(
        tiny_corpus, tmp_path, data_dir, capsys):
    manifests = two_speaker_manifests(tiny_corpus, tmp_path, stranger=False)
    run = tmp_path / "run"
    run_train(run, data_dir, "trainer.fast_dev_run=1", "data.corpus=null",
              *(f"+data.manifests.{split}={path}" for split, path in manifests.items()),
              experiment="tts", tiny=[t for t in TINY_TTS if not t.startswith("data.corpus")])
    speakers = sorted({json.loads(x)["speaker"]
                       for x in open(manifests["train"]).read().splitlines()})
    assert len(speakers) >= 2
    from rnnseq.checkpoints import load_task
    from rnnseq.tasks.text_to_speech import TextToSpeech

    task = load_task(TextToSpeech, run)  # on the device the CLI picks, as the vocoder's phase
    mels = []
    for speaker in speakers[:2]:  # in process: the same checkpoint loaded twice
        out = tmp_path / speaker
        assert synthesize_main([f"run={run}", "good night", "--out", str(out),
                                "--speaker", speaker]) == 0
        # each wav is what the task says for that speaker's index
        mel, wave = synthesize_directly(task, "good night", task.hparams.speakers.index(speaker))
        assert_wav_is(out / "001.wav", wave)
        mels.append(mel)
    # same text and seed: the same speaker twice is the same, the other speaker differs
    assert torch.equal(synthesize_directly(task, "good night",
                                           task.hparams.speakers.index(speakers[0]))[0], mels[0])
    frames = min(len(mels[0]), len(mels[1]))
    assert float((mels[0][:frames] - mels[1][:frames]).abs().mean()) > 1e-3
    assert synthesize_main([f"run={run}", "good night", "--out", str(tmp_path / "x"),
                            "--speaker", "nobody"]) == 2
    assert "speaker 'nobody' is not one of the run's speakers" in capsys.readouterr().err


def test_evaluate_rescores_a_synthesis_run_with_other_stop_settings_and_a_listener(
        tts_run, smoke_run, capsys):
    from rnnseq.evaluate import main
    from rnnseq.evaluation import evaluate

    record = evaluate(tts_run, {}, split="test_long", synthesis={"stop_threshold": 0.99},
                      evaluation={"asr": str(smoke_run)})
    assert record["synthesis"]["stop_threshold"] == 0.99
    assert {"test_long/mcd", "test_long/synthesis_cer", "test_long/copy_cer"} <= set(
        record["metrics"])
    trained = json.loads((tts_run / "results.json").read_text())["test_long"]
    # the recordings and their vocoder copies do not depend on the stop settings
    for name in ("test_long/recording_cer", "test_long/copy_mcd"):
        assert record["metrics"][name] == pytest.approx(trained[name], abs=1e-6)
    assert record["items_scored"] == len(record["items"]) == 2
    for wrong, named in ((["decoding.beam_size=2"], "no decoding settings"),
                         (["evaluation.listener=x"], "task.evaluation has no ['listener']")):
        assert main([f"run={tts_run}", *wrong]) == 2
        assert named in capsys.readouterr().err
    assert main([f"run={smoke_run}", "synthesis.stop_threshold=0.9"]) == 2
    assert "SpeechToText checkpoint has no synthesis settings" in capsys.readouterr().err


def test_a_synthesis_model_says_numbers_in_words_and_names_what_it_cannot_say(tts_run):
    """The speech synthesis recipe records the ``spoken`` front end in its checkpoint, so a new
    text is read as training text was; what it still cannot say is named, not dropped silently."""
    from rnnseq.api import Synthesizer

    synthesizer = Synthesizer.from_run(tts_run, "cpu")
    task = synthesizer.task
    assert task.hparams.normalizer == "spoken"
    assert task.input_symbols("In 1850.") == task.input_symbols("in eighteen fifty")
    speaker = (synthesizer.speakers or [None])[0]
    with pytest.warns(UserWarning, match=r"x: cannot speak '§'") as caught:
        list(synthesizer.speak_each(["a § 2 b"], speaker, ids=["x"]))
    assert "'2'" not in str(caught[0].message)  # a number is said, not named


def test_a_format_2_synthesis_checkpoint_is_refused_and_the_upgrade_makes_it_load(tts_run,
                                                                                  tmp_path):
    """Format 2 saved the vocoder's mel filterbank, which is derived from the features now:
    such a checkpoint is refused with the upgrade command, which drops it and keeps a backup;
    the upgraded one synthesises as one written today."""
    from rnnseq.checkpoints import find_checkpoint, load_task
    from rnnseq.tasks.text_to_speech import TextToSpeech
    from rnnseq.upgrade import main as upgrade_main

    checkpoint = torch.load(find_checkpoint(tts_run), weights_only=True)
    assert not any(key.startswith("vocoder.inverse_mel") for key in checkpoint["state_dict"])
    old = dict(checkpoint, state_dict={**checkpoint["state_dict"],
                                       "vocoder.inverse_mel.fb": torch.zeros(257, 80)},
               rnnseq={**checkpoint["rnnseq"], "format": 2})
    path = tmp_path / "old.ckpt"
    torch.save(old, path)
    with pytest.raises(ValueError, match=r"checkpoint format 2.*python -m rnnseq.upgrade"):
        load_task(TextToSpeech, path, "cpu")
    assert upgrade_main([str(path)]) == 0 and (tmp_path / "old.ckpt.format2").is_file()
    assert upgrade_main([str(path)]) == 0  # already up to date: nothing to do
    task = load_task(TextToSpeech, path, "cpu")
    new = load_task(TextToSpeech, tts_run, "cpu")
    frames = torch.randn(30, new.n_mels)
    assert torch.equal(task.vocoder(frames), new.vocoder(frames))
