import ctypes
import ctypes.util
import json
from pathlib import Path

import numpy as np
import pytest

from rnnseq.data.builders import speech_corpus
from rnnseq.data.builders.espeak import EspeakSynthesizer, Voice
from rnnseq.data.builders.sentences import extract_sentences, normalize
from rnnseq.data.builders.speech_corpus import EspeakSpeechCorpus
from rnnseq.data.manifest import DataReport, read_manifest

PLAY = """THE TRAGEDY OF TESTING

PERSONS REPRESENTED.

Hamlet, Prince of Denmark.

ACT I.

Scene I. Elsinore. A platform.

[Enter Hamlet and Horatio.]

Ham.
'Tis now struck twelve; get thee to bed, Horatio!
What, has this thing appear'd again to-night?

Hor.
Peace, break thee off. Look where it comes again--
[Enter Ghost,
armed.]

First Clown.
A pick-axe and a spade, a spade.
"""


def test_normalize_keeps_lowercase_letters_apostrophes_and_single_spaces():
    assert normalize("'Tis NOW, sir!  Appear'd -- to-night?") == "tis now sir appear'd to night"


PROSE = """The President. Thank you all very much. [Applause] In 1984 he came home.

It\u2019s been a long year \u2014 a hard one. Mr. Smith went to the U.S. Senate today;
we fought E. coli together. NATO stands with us. Our costs fell by 5% this year.
So do I.

Audience members. Yes we can!
"""


def test_prose_drops_speaker_labels_notes_and_what_a_voice_would_read_differently():
    assert extract_sentences(PROSE, min_words=2, max_words=12, style="prose") == [
        "thank you all very much",  # speaker label and [Applause] gone
        "it's been a long year",  # curly apostrophe and em dash are punctuation
        "a hard one",
        # digits ("in 1984"), abbreviations (Mr., U.S., E.), acronyms (NATO) and symbols (5%):
        # the whole piece is dropped, never read one way and transcribed another
        "so do i",
        "yes we can",
    ]
    with pytest.raises(ValueError, match="text style"):
        extract_sentences(PROSE, style="poem")


def test_play_text_drops_tags_directions_and_headings():
    sentences = extract_sentences(PLAY, min_words=3, max_words=12)
    assert sentences == [
        "tis now struck twelve",
        "get thee to bed horatio",
        "what has this thing appear'd again to night",
        "peace break thee off",
        "look where it comes again",
        "a pick axe and a spade a spade",
    ]
    assert extract_sentences(PLAY, min_words=5, max_words=5) == ["get thee to bed horatio",
                                                                  "look where it comes again"]


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    words = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
             "november oscar papa quebec romeo sierra tango uniform victor whiskey yankee").split()
    for d, name in enumerate(["one", "two", "three", "four"]):
        own = words[6 * d : 6 * d + 6]  # each document has words of its own
        lines = [" ".join(own[(k + j) % 6] for j in range(4)) + "." for k in range(6)]
        (folder / f"{name}.txt").write_text("\n".join(lines))
    return folder


def _corpus(cache, documents, num_workers=2, **kw):
    settings = dict(text_source=str(documents), valid_documents=["three"],
                    test_documents=["four"], num_utterances={"train": 6, "valid": 2, "test": 2},
                    voices=["en-us", "en+f2"], variants=[], extra_source=None, extra_share=0.0,
                    test_text_documents=[], neural_share=0.0, seed=3)
    settings.update(kw)
    return EspeakSpeechCorpus(cache_dir=str(cache), num_workers=num_workers, **settings)


def test_corpus_build_is_deterministic_cached_and_holds_out_documents(tmp_path, documents):
    first = _corpus(tmp_path / "a", documents)
    manifests = first.build()
    second = _corpus(tmp_path / "b", documents)
    assert Path(second.build()["train"]).read_text() == Path(manifests["train"]).read_text()
    assert first.root.name == second.root.name  # same settings, same cache key
    assert _corpus(tmp_path / "a", documents, seed=4).root != first.root

    texts = {}
    for split, path in manifests.items():
        utts = read_manifest(path, DataReport())
        texts[split] = {u.text for u in utts}
        for u in utts:
            assert Path(u.audio_path).is_file() and u.duration > 0.3
    lines = [json.loads(x) for x in Path(manifests["train"]).read_text().splitlines()]
    assert {x["voice"] for x in lines} <= {"en-us", "en+f2"}
    assert len(texts["train"]) == 6 and len(texts["valid"]) == 2 and len(texts["test"]) == 2
    assert not (texts["valid"] | texts["test"]) & texts["train"]
    # built once: a second build() returns at once without touching the files
    mtime = Path(manifests["train"]).stat().st_mtime_ns
    first.build()
    assert Path(manifests["train"]).stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("a/*.tmp-*"))


def test_the_audio_is_the_same_with_any_number_of_synthesis_processes(tmp_path, documents,
                                                                      monkeypatch):
    """espeak-ng carries state from one utterance to the next; fixed blocks, each spoken by an
    espeak-ng of its own, keep that from depending on how many processes share the work."""
    synth = EspeakSynthesizer.shared()
    spoken = [synth.synthesize("alpha bravo charlie delta", Voice("en-us")) for _ in range(2)]
    assert not np.array_equal(*spoken)  # what the blocks are for: the same text, other samples
    fresh = []
    for variant in ("f2", "caleb", "f2", "caleb"):  # breath noise; Klatt 6 noise from C's rand()
        with EspeakSynthesizer.fresh() as espeak:  # a private copy of the library, unloaded after
            fresh.append(espeak.synthesize("alpha bravo", Voice(f"en+{variant}"), seed=7))
        ctypes.CDLL(ctypes.util.find_library("c")).rand()  # as another library in the process might
    assert np.array_equal(fresh[0], fresh[2]) and np.array_equal(fresh[1], fresh[3])
    monkeypatch.setattr(speech_corpus, "SYNTHESIS_BLOCK", 5)  # 10 utterances: two blocks
    audio, manifests = [], []
    for workers in (1, 2):
        if workers == 2:  # and the second block handed out first, as a slower block would be
            monkeypatch.setattr(speech_corpus, "_neural_jobs", lambda jobs: int(jobs[0].id[-1]))
        corpus = _corpus(tmp_path / str(workers), documents, num_workers=workers)
        root = Path(corpus.build()["train"]).parent
        audio.append({p.name: p.read_bytes() for p in root.glob("wav/*/*.wav")})
        manifests.append([p.read_text() for p in sorted(root.glob("*.jsonl"))])
    assert len(audio[0]) == 10 and audio[0] == audio[1]
    assert manifests[0] == manifests[1]  # every entry in corpus order, with its own duration


def test_bad_corpus_settings_name_the_problem(tmp_path, documents):
    with pytest.raises(ValueError, match="unknown corpus setting.*'voice'"):
        EspeakSpeechCorpus(cache_dir=str(tmp_path), voice="en-us")
    with pytest.raises(ValueError, match=r"valid_documents \['nope'\] not found"):
        _corpus(tmp_path, documents, valid_documents=["nope"]).build()
    with pytest.raises(ValueError, match="train split wants 999 sentences"):
        _corpus(tmp_path, documents, num_utterances={"train": 999}).build()
    with pytest.raises(FileNotFoundError, match="text_source"):
        _corpus(tmp_path, documents, text_source=str(tmp_path / "missing")).build()


def test_default_shakespeare_corpus_has_enough_word_types(data_dir):
    """The default text selection (before synthesis) has at least 1,000 distinct words and
    keeps its held-out plays out of training."""
    corpus = EspeakSpeechCorpus(cache_dir=str(data_dir))
    sentences = corpus.select_sentences()
    assert {k: len(v) for k, v in sentences.items()} == {"train": 8000, "valid": 300, "test": 500,
                                                         "test_text": 300}
    words = {w for s in sentences["train"] for w in s.split()}
    assert len(words) >= 1000
    assert all(3 <= len(s.split()) <= 12 for v in sentences.values() for s in v)
    assert not set(sentences["test"]) & set(sentences["train"])


def test_held_out_splits_do_not_depend_on_the_training_size(tmp_path, documents):
    small = _corpus(tmp_path, documents, num_utterances={"train": 3, "valid": 2, "test": 2})
    large = _corpus(tmp_path, documents, num_utterances={"train": 6, "valid": 2, "test": 2})
    a, b = small.select_sentences(), large.select_sentences()
    assert a["test"] == b["test"] and a["valid"] == b["valid"]


@pytest.fixture(scope="module")
def prose(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prose")
    for name, word in (("speech-a", "budget"), ("speech-b", "harbour"), ("held-out", "rocket")):
        lines = [f"The {word} is{' very' * k} good today." for k in range(1, 7)]
        lines.append(f"In 1990 the {word} grew.")  # dropped: digits
        (folder / f"{name}.txt").write_text("\n\n".join(lines))
    return folder


def test_a_second_source_trains_and_a_held_out_document_and_unheard_voices_form_test_splits(
        tmp_path, documents, prose):
    corpus = _corpus(tmp_path, documents, extra_source=str(prose), extra_share=0.5,
                     test_text_documents=["held-out"], voices=["en-us", "en"],
                     variants=["", "f2"], test_voices=["en-us-nyc"], test_variants=["m4"],
                     neural_share=0.3, num_utterances={"train": 6, "valid": 2, "test": 2,
                                                       "test_text": 3, "test_voices": 1,
                                                       "test_engine": 2})
    manifests = corpus.build()
    assert sorted(manifests) == ["test", "test_engine", "test_text", "test_voices", "train",
                                 "valid"]
    rows = {split: [json.loads(x) for x in Path(path).read_text().splitlines()]
            for split, path in manifests.items()}
    prose_train = [r["text"] for r in rows["train"] if r["text"].startswith("the ")]
    assert len(prose_train) == 3  # half of 6
    assert not any("rocket" in t for t in prose_train)
    assert all("rocket" in r["text"] for r in rows["test_text"]) and len(rows["test_text"]) == 3
    assert [r["text"] for r in rows["test_voices"]] == [rows["test"][0]["text"]]
    assert {r["voice"] for r in rows["test_voices"]} == {"en-us-nyc+m4"}
    assert [r["text"] for r in rows["test_engine"]] == [r["text"] for r in rows["test"]]
    assert {r["voice"] for r in rows["test_engine"]} == {"piper:joe"}
    heard = [r["voice"] for s in ("train", "valid", "test", "test_text") for r in rows[s]]
    assert set(heard) <= {"en-us", "en-us+f2", "en", "en+f2", "hibari:heart"}
    assert 0 < heard.count("hibari:heart") < len(heard)  # about 30 %
    with pytest.raises(ValueError, match="test engine must be unheard"):
        _corpus(tmp_path, documents, neural_voices=["piper:joe"], neural_share=0.1)
    with pytest.raises(ValueError, match="are not neural voices"):
        _corpus(tmp_path, documents, neural_voices=["en-us"], neural_share=0.1)
    with pytest.raises(ValueError, match=r"voices \['en-us\+f2'\] are in both"):
        _corpus(tmp_path, documents, voices=["en-us"], variants=["f2"], test_voices=["en-us"],
                test_variants=["f2", "m4"])
    with pytest.raises(ValueError, match="need data.corpus.extra_source"):
        _corpus(tmp_path, documents, extra_share=0.2)
    with pytest.raises(ValueError, match="cannot exceed num_utterances.test"):
        _corpus(tmp_path, documents, test_voices=["en"],
                num_utterances={"train": 6, "valid": 2, "test": 2, "test_voices": 3})


def test_neural_voices_speak_reproducibly_at_the_asked_speed():
    from rnnseq.data.builders.neural_voices import neural_voice

    for name, rate in (("hibari:heart", 24000), ("piper:joe", 22050)):
        voice = neural_voice(name)
        assert voice.sample_rate == rate
        normal = voice.synthesize("good night sweet prince", speed=1.0, seed=1)
        assert 0.6 < len(normal) / rate < 3.0 and float(np.sqrt(np.mean(normal ** 2))) > 0.01
        assert np.array_equal(normal, voice.synthesize("good night sweet prince", 1.0, seed=1))
        fast = voice.synthesize("good night sweet prince", speed=1.3, seed=1)
        assert 1.1 < len(normal) / len(fast) < 1.5
    with pytest.raises(ValueError, match="only hibari:heart ships inside the wheel"):
        neural_voice("hibari:emma")
    with pytest.raises(ValueError, match="unknown neural voice"):
        neural_voice("festival:kal")
