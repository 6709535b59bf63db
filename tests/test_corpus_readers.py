"""Readers of published corpus layouts (LibriSpeech, Common Voice, Kaldi data folders, LJSpeech),
each on a small fixture written here: the manifests they write, the audio they point at, and every
line they leave out reported with file, line and reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rnnseq.data.audio import load_audio
from rnnseq.data.manifest import DataReport, read_manifest
from rnnseq.data.readers import CommonVoice, KaldiData, LibriSpeech, LJSpeech, read_common_voice
from rnnseq.data.readers.__main__ import main

RATE = 16000


def tone(path: Path, seconds: float, rate: int = RATE, frequency: float = 220.0, **kwargs) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(round(seconds * rate))) / rate
    wave = (0.2 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    soundfile.write(path, wave, rate, **kwargs)
    return wave


def rows(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def issues(report: DataReport) -> list[tuple[str, int | None, str]]:
    return sorted((Path(i.source).name, i.line, i.reason.split(":")[0].split(" (")[0])
                  for i in report.issues)


def librispeech_fixture(root: Path) -> Path:
    """Two subsets; dev-clean has a line without audio, a flac without a line, an empty line."""
    chapter = root / "dev-clean" / "84" / "121123"
    tone(chapter / "84-121123-0000.flac", 1.0)
    tone(chapter / "84-121123-0001.flac", 0.5)
    tone(chapter / "84-121123-0003.flac", 0.25)  # listed nowhere
    (chapter / "84-121123-0000.trans.txt").write_text(  # the name LibriSpeech gives it
        "84-121123-0000 GO DO YOU HEAR\n"
        "84-121123-0001 BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED\n"
        "84-121123-0002 THIS ONE HAS NO AUDIO\n"
        "84-121123-0004\n")
    (chapter / "84-121123-0000.trans.txt").rename(chapter / "84-121123.trans.txt")
    other = root / "train-clean-5" / "19" / "198"
    for n in range(3):
        tone(other / f"19-198-000{n}.flac", 0.5 + 0.25 * n)
    (other / "19-198.trans.txt").write_text("".join(f"19-198-000{n} WORDS NUMBER {n} DON'T\n"
                                                    for n in range(3)))
    return root


def test_librispeech_subsets_become_split_manifests_once_with_every_problem_reported(tmp_path):
    root = librispeech_fixture(tmp_path / "LibriSpeech")
    corpus = LibriSpeech(str(root), {"train": "train-clean-5", "valid": ["dev-clean"],
                                     "test": ["dev-clean"]}, str(tmp_path / "manifests"))
    paths = corpus.build()
    train, valid = rows(paths["train"]), rows(paths["valid"])
    assert [(r["id"], r["text"], r["duration"], r["speaker"]) for r in train] == [
        (f"19-198-000{n}", f"WORDS NUMBER {n} DON'T", 0.5 + 0.25 * n, "19") for n in range(3)]
    assert [r["id"] for r in valid] == ["84-121123-0000", "84-121123-0001"]
    assert valid[0]["audio_filepath"] == str(root / "dev-clean/84/121123/84-121123-0000.flac")
    # each problem once per split that reads dev-clean, with the transcript file and its line
    assert issues(corpus.report) == sorted(2 * [
        ("84-121123-0003.flac", None, "no line for 84-121123-0003 in 84-121123.trans.txt"),
        ("84-121123.trans.txt", 3, "audio file " + str(root / "dev-clean/84/121123/84-121123-0002.flac")
         + " does not exist"),
        ("84-121123.trans.txt", 4, "empty transcript")])
    assert {i.split for i in corpus.report.issues} == {"valid", "test"}
    # built once: a second corpus object reads the manifests and the report back
    (root / "train-clean-5/19/198/19-198-0002.flac").unlink()
    again = LibriSpeech(str(root), {"train": "train-clean-5", "valid": ["dev-clean"],
                                    "test": ["dev-clean"]}, str(tmp_path / "manifests"))
    assert again.build() == paths and len(rows(paths["train"])) == 3
    assert issues(again.report) == issues(corpus.report)
    # rebuild reads the folders again; other splits get their own folder
    again.rebuild = True
    assert len(rows(again.build()["train"])) == 2
    other = LibriSpeech(str(root), {"train": "train-clean-5", "valid": "dev-clean",
                                    "test": "train-clean-5"}, str(tmp_path / "manifests"))
    assert Path(other.build()["test"]).parent != Path(paths["test"]).parent


def test_librispeech_errors_name_the_setting(tmp_path):
    root = librispeech_fixture(tmp_path / "LibriSpeech")
    with pytest.raises(FileNotFoundError, match="data.corpus.splits.valid: .*dev-other does not exist"):
        LibriSpeech(str(root), {"train": "train-clean-5", "valid": "dev-other"}, str(tmp_path)).build()
    with pytest.raises(FileNotFoundError, match="data.corpus.root="):
        LibriSpeech(str(tmp_path / "nowhere"), {"train": "x"}, str(tmp_path))
    with pytest.raises(ValueError, match="data.corpus.root is not set"):
        LibriSpeech("???", {"train": "x"}, str(tmp_path))


def test_common_voice_reads_columns_by_name_and_decodes_mp3(tmp_path):
    root = tmp_path / "cv" / "en"
    written = tone(root / "clips" / "common_voice_en_1.mp3", 1.0, format="MP3")
    tone(root / "clips" / "common_voice_en_2.mp3", 0.5, format="MP3")
    header = "client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\n"
    (root / "train.tsv").write_text(
        header
        + 'abc\tcommon_voice_en_1.mp3\ts1\tHe said "hello".\t\t2\t0\t\n'
        + "def\tcommon_voice_en_2.mp3\ts2\t   \t\t2\t0\t\n"       # empty sentence
        + "ghi\tcommon_voice_en_3.mp3\ts3\tNo clip here.\t\t2\t0\t\n"
        + "short\trow\n")
    report = DataReport()
    entries = read_common_voice(root / "train.tsv", report)
    assert [(e["id"], e["text"], e["speaker"]) for e in entries] == [
        ("common_voice_en_1", 'He said "hello".', "abc")]
    assert abs(entries[0]["duration"] - 1.0) < 0.08  # MP3 pads a frame at most
    decoded = load_audio(entries[0]["audio_filepath"], RATE).numpy()
    # the decoder's delay aside, it is the tone written: the same energy and length
    assert abs(len(decoded) - len(written)) < 0.08 * RATE
    assert abs(np.sqrt(np.mean(decoded ** 2)) - np.sqrt(np.mean(written ** 2))) < 0.02
    assert issues(report) == [("train.tsv", 3, "empty transcript"),
                              ("train.tsv", 4, "audio file " + str(root / "clips/common_voice_en_3.mp3")
                               + " does not exist"),
                              ("train.tsv", 5, "2 columns where the header has 8")]
    (root / "dev.tsv").write_text("client_id\tfile\ttext\n")
    with pytest.raises(ValueError, match=r"dev.tsv:1: the header lacks column\(s\) \['path', 'sentence'\]"):
        CommonVoice(str(root), {"train": "train.tsv", "valid": "dev.tsv"}, str(tmp_path / "m")).build()


def kaldi_fixture(root: Path) -> dict:
    waves = {"rec1": tone(root / "audio" / "rec1.wav", 2.0),
             "rec2": tone(root / "audio" / "rec2.flac", 1.0, frequency=440.0)}
    data = root / "data" / "train"
    data.mkdir(parents=True)
    (data / "wav.scp").write_text(
        "rec1 audio/rec1.wav\n"                                     # relative to root
        f"rec2 {root / 'audio' / 'rec2.flac'}\n"
        "rec3 sph2pipe -f wav -p audio/rec3.sph |\n"
        "rec4 raw_mfcc.ark:1234\n")
    return {"waves": waves, "data": data}


def test_kaldi_folder_without_segments_refuses_commands_with_file_and_line(tmp_path):
    root = tmp_path / "s5"
    data = kaldi_fixture(root)["data"]
    (data / "text").write_text("rec1 first recording\nrec2\tsecond one\nrec3 piped audio\n")  # a tab too
    (data / "utt2spk").write_text("rec1 alice\nrec2 bob\nrec3 carol\n")
    corpus = KaldiData(str(root), {"train": "data/train"}, str(tmp_path / "m"))
    entries = rows(corpus.build()["train"])
    assert [(e["id"], e["text"], e["speaker"], e["duration"]) for e in entries] == [
        ("rec1", "first recording", "alice", 2.0), ("rec2", "second one", "bob", 1.0)]
    found = {(Path(i.source).name, i.line): i.reason for i in corpus.report.issues}
    assert found[("wav.scp", 3)].startswith("recording rec3 is a command (sph2pipe")
    assert "run the command once and list the file it writes" in found[("wav.scp", 3)]
    assert found[("wav.scp", 4)].startswith("recording rec4 is not a plain audio path")
    assert found[("text", 3)] == "rec3 has no usable line in wav.scp"
    assert len(found) == 3


def test_kaldi_segments_are_cut_from_their_recordings(tmp_path):
    root = tmp_path / "s5"
    fixture = kaldi_fixture(root)
    data = fixture["data"]
    (data / "segments").write_text(
        "u1 rec1 0.25 1.00\n"
        "u2 rec1 1.50 -1\n"          # to the end
        "u3 rec2 0.10 0.60\n"
        "u4 rec1 1.2 0.9\n"          # ends before it starts
        "u5 rec3 0 1\n"              # its recording was refused
        "u6 rec1 0.5\n")             # a field short
    (data / "text").write_text("u1 one\nu2 two\nu3 three\nu4 four\nu5 five\nu6 six\nu7 seven\n")
    corpus = KaldiData(str(root), {"train": "data/train"}, str(tmp_path / "m"))
    entries = {e["id"]: e for e in rows(corpus.build()["train"])}
    assert sorted(entries) == ["u1", "u2", "u3"]
    expected = {"u1": fixture["waves"]["rec1"][4000:16000], "u2": fixture["waves"]["rec1"][24000:],
                "u3": fixture["waves"]["rec2"][1600:9600]}
    for utt, wave in expected.items():
        cut, rate = soundfile.read(entries[utt]["audio_filepath"], dtype="float32")
        assert rate == RATE and len(cut) == len(wave) and entries[utt]["duration"] == len(wave) / RATE
        assert np.abs(cut - wave).max() < 2 / 32768  # 16-bit FLAC of the same samples
    found = {(Path(i.source).name, i.line): i.reason for i in corpus.report.issues}
    assert found[("segments", 4)].startswith("bad segment times")
    assert found[("segments", 5)] == "recording rec3 has no usable line in wav.scp"
    assert found[("segments", 6)] == "expected 4 fields, got 3"
    assert found[("text", 6)] == "u6 has no line in segments"
    assert found[("text", 7)] == "u7 has no line in segments"
    # changed times make a new cut (a rebuild reads the folders again)
    (data / "segments").write_text("u1 rec1 0.50 1.00\n")
    (data / "text").write_text("u1 one\n")
    corpus.rebuild = True
    moved = rows(corpus.build()["train"])[0]
    cut = soundfile.read(moved["audio_filepath"], dtype="float32")[0]
    assert moved["audio_filepath"] != entries["u1"]["audio_filepath"] and len(cut) == 8000


def test_ljspeech_holds_out_a_stable_hash_split_of_the_normalised_text(tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    lines = []
    for n in range(12):
        tone(root / "wavs" / f"LJ001-{n:04d}.wav", 0.3, rate=22050)
        lines.append(f"LJ001-{n:04d}|Dr. Smith paid $5.|Doctor Smith paid five dollars.")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")

    def build(out: str) -> dict:
        corpus = LJSpeech(str(root), out, held_out={"valid": 2, "test": 3})
        return {split: [r["id"] for r in rows(path)] for split, path in corpus.build().items()}

    first, second = build(str(tmp_path / "a")), build(str(tmp_path / "b"))
    assert first == second and [len(first[s]) for s in ("train", "valid", "test")] == [7, 2, 3]
    assert sorted(sum(first.values(), [])) == [f"LJ001-{n:04d}" for n in range(12)]
    text = rows(tmp_path / "a" / next(p.name for p in (tmp_path / "a").iterdir()) / "valid.jsonl")[0]
    assert text["text"] == "Doctor Smith paid five dollars."
    with pytest.raises(ValueError, match="data.corpus.held_out"):
        LJSpeech(str(root), str(tmp_path), held_out={"train": 2})


def test_command_line_readers_write_a_manifest_and_its_report(tmp_path, capsys):
    root = librispeech_fixture(tmp_path / "LibriSpeech")
    out = tmp_path / "dev.jsonl"
    assert main(["librispeech", str(root / "dev-clean"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote 2 utterances to {out}" in printed and "left out 3" in printed
    assert "84-121123.trans.txt:3: audio file" in printed
    assert [u.id for u in read_manifest(out, DataReport())] == ["84-121123-0000", "84-121123-0001"]
    assert len(json.loads(out.with_suffix(".report.json").read_text())["issues"]) == 3
    assert main(["kaldi", str(tmp_path), "--out", str(tmp_path / "k.jsonl")]) == 2
    assert "a Kaldi data folder has wav.scp and text" in capsys.readouterr().err
