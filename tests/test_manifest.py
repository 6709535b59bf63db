import json

import pytest

from rnnseq.data.manifest import DataReport, read_manifest


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")


def test_bad_lines_are_skipped_and_reported_with_file_and_line(tmp_path):
    manifest = tmp_path / "train.jsonl"
    good = {"audio_filepath": "a.wav", "duration": 1.0, "text": "hello there"}
    _write(manifest, [
        json.dumps(good),
        '{"audio_filepath": "b.wav", "duration": 1.0, "text": ',  # truncated line
        json.dumps({"audio_filepath": "c.wav", "text": "no duration"}),
        json.dumps({"audio_filepath": "d.wav", "duration": 1.0, "text": "   "}),
        json.dumps({"audio_filepath": "e.wav", "duration": "long", "text": "x"}),
        json.dumps({"audio_filepath": "f.wav", "duration": -1, "text": "x"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({**good, "id": "dup"}),
        json.dumps({**good, "id": "dup"}),
        "",
    ])
    report = DataReport()
    utts = read_manifest(manifest, report)
    assert [u.id for u in utts] == ["train-1", "dup"]
    assert utts[0].audio_path == str(tmp_path / "a.wav")  # relative to the manifest's folder
    reasons = {i.line: i.reason for i in report.issues}
    assert set(reasons) == {2, 3, 4, 5, 6, 7, 9}
    assert "malformed JSON" in reasons[2]
    assert "missing key" in reasons[3] and "duration" in reasons[3]
    assert reasons[4] == "empty transcript"
    assert "not a number" in reasons[5]
    assert "not positive" in reasons[6]
    assert "JSON object" in reasons[7]
    assert "duplicate id 'dup'" in reasons[9]
    assert all(i.source == str(manifest) for i in report.issues)
    assert report.counts() == {"skipped": 7}


def test_report_round_trips_to_json(tmp_path):
    report = DataReport()
    report.add("x.wav", None, "unreadable", id="u1")
    report.split = "test"  # what the datamodule sets while it reads a split
    report.add("y.wav", None, "silent", id="u2")
    report.write(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["counts"] == {"skipped": 2}
    assert data["issues"][0] == {"source": "x.wav", "line": None, "reason": "unreadable",
                                 "action": "skipped", "id": "u1", "split": None}
    assert data["issues"][1]["split"] == "test"
    assert [i.id for i in report.of_split("test").issues] == ["u1", "u2"]
    assert [i.id for i in report.of_split("valid").issues] == ["u1"]


def test_missing_manifest_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_manifest(tmp_path / "nope.jsonl", DataReport())
