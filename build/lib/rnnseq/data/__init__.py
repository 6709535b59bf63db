"""Data: audio features, tokenizers, manifests, batching, datamodules and embedded corpora."""
