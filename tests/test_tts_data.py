"""The synthesis data module: phoneme or character inputs, speakers, and what it refuses."""

import json
from pathlib import Path

import pytest

from rnnseq.data.builders.espeak import EspeakSynthesizer
from rnnseq.data.tts import TTSDataModule


def two_speaker_manifests(tiny_corpus, folder: Path, drop_speaker_at: int | None = None,
                          stranger: bool = True):
    """The tiny speech corpus with each voice as a speaker (and no phonemes in the lines);
    with ``stranger``, valid and test get one speaker training never has."""
    out = {}
    for split in ("train", "valid", "test"):
        source = Path(tiny_corpus[split])
        lines = [json.loads(x) for x in source.read_text().splitlines()]
        for i, line in enumerate(lines):
            line["audio_filepath"] = str(source.parent / line["audio_filepath"])
            line["speaker"] = line["voice"].split("+")[0]
            if stranger and split != "train" and i == 0:
                line["speaker"] = "stranger"
            if split == "train" and i == drop_speaker_at:
                del line["speaker"]
        out[split] = folder / f"{split}.jsonl"
        out[split].write_text("".join(json.dumps(x) + "\n" for x in lines))
    return {k: str(v) for k, v in out.items()}


def datamodule(manifests, **kw):
    return TTSDataModule(manifests=manifests, feature_cache=None, num_workers=0,
                         max_frames=4000, **kw)


def test_phoneme_inputs_come_from_espeak_with_word_boundaries_and_speakers_get_ids(
        tiny_corpus, tmp_path):
    dm = datamodule(two_speaker_manifests(tiny_corpus, tmp_path))
    dm.setup()
    train = dm.datasets["train"]
    example = train[0]
    utt = train.utterances[0]
    expected = EspeakSynthesizer.shared().phoneme_symbols(utt.text, "en-us")
    assert dm.tokenizer.decode(example.tokens.tolist()) == expected
    assert "|" in dm.tokenizer.symbols and example.text == utt.text
    voices = sorted({u.speaker for u in train.utterances})  # en, en-us and the neural voice
    assert len(voices) == 3 and dm.speaker_ids == {v: i for i, v in enumerate(voices)}
    assert example.speaker == dm.speaker_ids[utt.speaker]
    batch = next(iter(dm.train_dataloader()))
    assert batch.speakers is not None and batch.speakers.shape == batch.target_lengths.shape
    args = dm.task_arguments()
    assert args["inputs"] == "phonemes" and args["speakers"] == voices
    # an evaluation utterance of a speaker training never had is left out and reported
    assert len(dm.datasets["valid"]) == 5
    assert any("speaker 'stranger'" in i.reason for i in dm.report.issues)


def test_character_inputs_are_the_normalised_text(tiny_corpus, tmp_path):
    dm = datamodule(two_speaker_manifests(tiny_corpus, tmp_path), inputs="characters")
    dm.setup()
    example = dm.datasets["train"][0]
    assert dm.tokenizer.decode(example.tokens.tolist()) == example.text


def test_mixed_speaker_fields_unknown_inputs_and_augmentation_are_refused(tiny_corpus, tmp_path):
    dm = datamodule(two_speaker_manifests(tiny_corpus, tmp_path, drop_speaker_at=3))
    with pytest.raises(ValueError, match="1 training utterances .* have no speaker"):
        dm.setup()
    with pytest.raises(ValueError, match="data.inputs"):
        datamodule(tiny_corpus, inputs="graphemes")
    with pytest.raises(ValueError, match="data.augment"):
        datamodule(tiny_corpus, augment={"speed": {"p": 0.5}})
