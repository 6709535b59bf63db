"""rnnseq: recurrent sequence-to-sequence models composed from Hydra configs.

The Python API of trained runs (:mod:`rnnseq.api`)::

    from rnnseq import Recognizer, Synthesizer, TextGenerator

    Recognizer.from_run("experiments/asr/runs/<time>").transcribe("speech.wav")
    Synthesizer.from_run("experiments/tts/runs/<time>").speak("Good night.").wave
    TextGenerator.from_run("experiments/textgen/runs/<time>").sample("ROMEO.", 200)
"""

__version__ = "0.1.0"

__all__ = ["Recognizer", "Synthesizer", "TextGenerator", "__version__"]


def __getattr__(name: str):
    # Imported on first use: `import rnnseq` (and every module of the package, which imports
    # rnnseq first) stays free of torch, Lightning and the tasks until the API is asked for.
    if name in ("Recognizer", "Synthesizer", "TextGenerator"):
        from rnnseq import api

        return getattr(api, name)
    raise AttributeError(f"module 'rnnseq' has no attribute {name!r}")
