"""Plain ``nn.Module`` models (no Lightning): encoders, attention, decoders, seq2seq."""
