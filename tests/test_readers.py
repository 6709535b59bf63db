"""The folder reader: audio files plus transcripts -> a JSONL manifest and a report."""

from __future__ import annotations

import json

import numpy as np
import soundfile

from rnnseq.data.manifest import DataReport, read_manifest
from rnnseq.data.readers import folder_manifest
from rnnseq.data.readers.__main__ import main


def tone(path, seconds, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), rate)


def test_a_transcript_file_gives_a_manifest_and_every_problem_is_reported(tmp_path, capsys):
    corpus = tmp_path / "recordings"
    tone(corpus / "alice" / "a1.wav", 1.5)
    tone(corpus / "bob" / "b1.flac", 0.5, rate=8000)
    tone(corpus / "bob" / "b2.wav", 0.25)  # no transcript
    (corpus / "broken.wav").write_bytes(b"RIFF not really")
    (corpus / "notes.md").write_text("not audio")
    (tmp_path / "text").write_text(
        "a1 HELLO THERE\n"
        "bob/b1\tgood night\n"
        "broken something\n"
        "ghost nobody recorded this\n"
        "a1 a repeated id\n"
        "lonely\n")
    assert main(["folder", str(corpus), "--transcripts", str(tmp_path / "text")]) == 0
    out = capsys.readouterr().out
    manifest = corpus / "manifest.jsonl"
    assert f"wrote 2 utterances to {manifest}" in out
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [(r["id"], r["text"], r["duration"]) for r in rows] == [
        ("alice/a1", "HELLO THERE", 1.5), ("bob/b1", "good night", 0.5)]
    # the manifest reads back as rnnseq reads any manifest
    assert [u.id for u in read_manifest(manifest, DataReport())] == ["alice/a1", "bob/b1"]
    report = json.loads(manifest.with_suffix(".report.json").read_text())
    reasons = sorted(i["reason"].split(":")[0] for i in report["issues"])
    assert reasons == sorted(["id a1 appears twice; the first line is kept",
                              f"no transcript in {tmp_path / 'text'}", "no transcript after the id",
                              "transcript ghost has no audio file under " + str(corpus),
                              "unreadable audio"])
    assert "left out 5" in out


def test_sidecar_transcripts_and_ljspeech_lines(tmp_path):
    folder = tmp_path / "mine"
    tone(folder / "one.wav", 1.0)
    (folder / "one.lab").write_text("first words\n")
    tone(folder / "two.wav", 1.0)
    (folder / "two.txt").write_text("   \n")  # empty: reported
    path, report, count = folder_manifest(folder, out=tmp_path / "m.jsonl")
    assert count == 1 and [i.reason for i in report.issues] == ["empty transcript"]
    assert json.loads(path.read_text())["text"] == "first words"
    (tmp_path / "metadata.csv").write_text("one|Mr. Smith, 2 cats|Mister Smith, two cats\n"
                                           "two|second|second\n")
    path, report, count = folder_manifest(folder, tmp_path / "metadata.csv", tmp_path / "lj.jsonl")
    assert [json.loads(x)["text"] for x in path.read_text().splitlines()] == ["Mr. Smith, 2 cats",
                                                                             "second"]


def test_a_folder_without_usable_audio_is_a_clear_error(tmp_path, capsys):
    assert main(["folder", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder of audio files" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["folder", str(tmp_path / "empty")]) == 2
    assert "no audio files under" in capsys.readouterr().err


def test_the_ljspeech_layout_reads_the_normalised_column_and_names_a_speaker(tmp_path, capsys):
    corpus = tmp_path / "LJ"
    tone(corpus / "wavs" / "LJ001-0001.wav", 0.5)
    tone(corpus / "wavs" / "LJ001-0002.wav", 0.5)
    tone(corpus / "wavs" / "LJ001-0003.wav", 0.5)  # its line is broken
    (corpus / "metadata.csv").write_text(
        "LJ001-0001|In 1884 Dr. Smith came.|In eighteen eighty-four Doctor Smith came.\n"
        "LJ001-0002|Printing, in the only sense|\n"  # no normalised column: the text itself
        "LJ001-0003\n")
    assert main(["ljspeech", str(corpus), "--speaker", "linda"]) == 0
    lines = [json.loads(x) for x in (corpus / "manifest.jsonl").read_text().splitlines()]
    assert [(x["id"], x["text"], x["speaker"]) for x in lines] == [
        ("LJ001-0001", "In eighteen eighty-four Doctor Smith came.", "linda"),
        ("LJ001-0002", "Printing, in the only sense", "linda")]
    report = json.loads((corpus / "manifest.report.json").read_text())
    assert {i["reason"] for i in report["issues"]} == {
        "no transcript after the id", f"no transcript in {corpus / 'metadata.csv'}"}
    assert "left out 2" in capsys.readouterr().out
    assert main(["ljspeech", str(tmp_path)]) == 2  # not the layout: a clear error
    assert "LJSpeech layout" in capsys.readouterr().err
