"""rnnseq: recurrent sequence-to-sequence models composed from Hydra configs."""

__version__ = "0.1.0"
