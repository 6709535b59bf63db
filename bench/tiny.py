"""Tiny settings that the test suite and the GPU check's runs share (``tests/conftest.py`` reads
them from here: the GPU check must run where pytest is not installed)."""

# experiment=tts with a tiny model on a tiny one-voice corpus
TINY_TTS = [
    "model.encoder.embed_dim=16", "model.encoder.conv_layers=1", "model.encoder.hidden_size=8",
    "model.decoder.prenet_sizes=[16]", "model.decoder.attention_rnn_size=16",
    "model.decoder.decoder_rnn_size=16", "model.attention.attention_dim=8",
    "model.attention.conv_channels=4", "model.postnet.channels=8", "model.postnet.layers=2",
    "data.corpus.num_utterances={train:8,valid:4,test:4,test_long:2}",
    "data.corpus.name=espeak_tts-tiny", "data.corpus.num_workers=1",
    "task.synthesis.max_length_ratio=3",
]
