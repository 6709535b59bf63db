"""One argument style for every entry point that reads a run: ``run=PATH`` or the path first."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnseq.arguments import strip_key, take_run


def test_take_run_prefers_run_equals_anywhere_else_the_first_path():
    assert take_run(["decoding.beam_size=8", "run=r", "a.wav"]) == ("r", ["decoding.beam_size=8", "a.wav"])
    assert take_run(["decoding.beam_size=8", "r", "a.wav"]) == ("r", ["decoding.beam_size=8", "a.wav"])
    assert take_run(["a.wav", "run=r"]) == ("r", ["a.wav"])  # run= wins over position
    assert take_run(["decoding.lm=null"]) == (None, ["decoding.lm=null"])
    with pytest.raises(ValueError, match="run= given 2 times"):
        take_run(["run=a", "run=b"])
    assert strip_key("sweep=s", "sweep") == "s" and strip_key("s", "sweep") == "s"


@pytest.mark.parametrize("run_first", [True, False])
def test_every_entry_point_reads_the_run_both_ways(run_first):
    from rnnseq import evaluate, generate, synthesize, transcribe

    def run(path: str) -> list[str]:
        return [path] if run_first else [f"run={path}"]

    args = evaluate.parse_args([*run("r1"), "decoding.beam_size=2", "data.max_frames=9"])
    assert args.run == Path("r1") and args.decoding == {"beam_size": 2} and args.data == ["data.max_frames=9"]
    args = transcribe.parse_args([*run("r2"), "a.wav", "decoding.beam_size=3", "b.wav"])
    assert (args.run, args.files, args.decoding) == ("r2", ["a.wav", "b.wav"], {"beam_size": 3})
    args = synthesize.parse_args([*run("r3"), "good night", "--out", "o", "synthesis.seed=4"])
    assert (args.run, args.texts, args.synthesis) == ("r3", ["good night"], {"seed": 4})
    assert generate.parse_args([*run("r4"), "--length", "5"]).run == "r4"


def test_entry_points_refuse_a_missing_or_doubled_run(capsys):
    from rnnseq import evaluate, transcribe

    for argv in (["decoding.beam_size=2"], ["run=a", "run=b"], ["a", "b"]):
        with pytest.raises(SystemExit):
            evaluate.parse_args(argv)
    with pytest.raises(SystemExit):
        transcribe.parse_args(["run=r"])  # no audio
    assert "audio file" in capsys.readouterr().err


def test_summarize_takes_the_sweep_both_ways(tmp_path, capsys):
    from rnnseq.summarize import main

    for argv in ([str(tmp_path)], [f"sweep={tmp_path}"]):
        assert main(argv) == 2  # an empty folder: the error names it
        assert str(tmp_path) in capsys.readouterr().err
