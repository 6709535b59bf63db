"""Readers that turn speech corpora as they lie on disk into rnnseq's JSONL manifests.

- ``folder.py``: any folder of audio files with a transcript file or sidecar transcripts, and the
  LJSpeech layout, into one manifest (``python -m rnnseq.data.readers folder|ljspeech``).
- ``librispeech.py``, ``common_voice.py``, ``kaldi.py``, ``ljspeech.py``: corpora in their
  published layouts, as ``data.corpus`` objects (``data=librispeech``, ``data=common_voice``,
  ``data=kaldi``, ``data=ljspeech``) that write one manifest per split, and on the command line.
- ``split_corpus.py``: what they share (one entry per audio file, the split manifests written once).

Audio is read with soundfile (wav, flac, ogg, mp3, ...). Every line or file left out is reported
with its file, line and reason: in ``<manifest>.report.json`` on the command line, and in the
run's ``data_report.json`` through ``data.corpus``.
"""

from rnnseq.data.readers.common_voice import CommonVoice, read_common_voice
from rnnseq.data.readers.folder import (
    audio_files,
    folder_entries,
    folder_manifest,
    ljspeech_entries,
    ljspeech_manifest,
    read_transcripts,
)
from rnnseq.data.readers.kaldi import KaldiData, read_kaldi
from rnnseq.data.readers.librispeech import LibriSpeech, read_librispeech
from rnnseq.data.readers.ljspeech import LJSpeech
from rnnseq.data.readers.split_corpus import SplitCorpus, audio_entry

__all__ = ["CommonVoice", "KaldiData", "LJSpeech", "LibriSpeech", "SplitCorpus", "audio_entry",
           "audio_files", "folder_entries", "folder_manifest", "ljspeech_entries",
           "ljspeech_manifest", "read_common_voice", "read_kaldi", "read_librispeech",
           "read_transcripts"]
