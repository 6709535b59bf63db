import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rnnseq.data.builders.speech_corpus import trim_silence
from rnnseq.data.builders.tts_corpus import EspeakTTSCorpus


def test_trimming_cuts_leading_and_trailing_silence_and_keeps_a_margin():
    rate = 16000
    tone = 0.5 * np.sin(2 * np.pi * 220 * np.arange(rate // 2) / rate)  # 0.5 s
    wave = np.concatenate([np.zeros(rate // 5), tone, 1e-4 * np.ones(rate * 3 // 10)])
    trimmed = trim_silence(wave, rate, trim_db=40)
    assert abs(len(trimmed) - (len(tone) + 2 * 320)) <= 160  # 20 ms margins, 10 ms frames
    assert np.abs(trimmed[320:480]).max() > 0.1  # the tone starts right after the margin
    assert len(trim_silence(np.zeros(100), rate, 40)) == 100  # nothing loud: nothing cut


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tts_docs")
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
             "november oscar papa quebec romeo sierra tango uniform victor whiskey yankee").split()
    for d, name in enumerate(["one", "two", "three", "four"]):
        own = words[6 * d: 6 * d + 6]
        short = [" ".join(own[(k + j) % 6] for j in range(4)) + "." for k in range(6)]
        long = [" ".join(own[(k + j) % 6] for j in range(8)) + "." for k in range(3)]
        (folder / f"{name}.txt").write_text("\n".join(short + long))
    return folder


def test_one_voice_trimmed_with_phonemes_and_a_long_test_split(tmp_path, documents):
    corpus = EspeakTTSCorpus(
        cache_dir=str(tmp_path), num_workers=2, text_source=str(documents),
        valid_documents=["three"], test_documents=["four"], extra_source=None, extra_share=0.0,
        num_utterances={"train": 5, "valid": 2, "test": 2, "test_long": 2}, max_words=5,
        long_words=[7, 9], seed=1)
    manifests = corpus.build()
    assert sorted(manifests) == ["test", "test_long", "train", "valid"]
    lines = {split: [json.loads(x) for x in Path(path).read_text().splitlines()]
             for split, path in manifests.items()}
    assert {x["voice"] for entries in lines.values() for x in entries} == {"en-us"}
    longest_train = max(len(x["text"].split()) for x in lines["train"])
    assert all(len(x["text"].split()) > longest_train for x in lines["test_long"])
    test_words = set("sierra tango uniform victor whiskey yankee".split())
    assert all(set(x["text"].split()) <= test_words for x in lines["test_long"])
    for x in lines["train"]:
        # espeak-ng IPA with stress marks, a boundary between every two words
        assert "ˈ" in x["phonemes"]
        assert x["phonemes"].count(" | ") == len(x["text"].split()) - 1
        wave, rate = soundfile.read(Path(corpus.root) / x["audio_filepath"])
        # trimmed: espeak-ng's own leading silence (about 60 ms at this rate) is gone
        assert np.abs(wave[:int(0.04 * rate)]).max() > 0.01


def test_long_sentences_must_be_longer_than_training_ones(tmp_path):
    with pytest.raises(ValueError, match="long_words"):
        EspeakTTSCorpus(cache_dir=str(tmp_path), max_words=10, long_words=[8, 20])
    with pytest.raises(ValueError, match="unknown split"):
        EspeakTTSCorpus(cache_dir=str(tmp_path), num_utterances={"train": 3, "test_voices": 2})
