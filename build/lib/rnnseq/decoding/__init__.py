"""Search over a decoder's ``init_state``/``step`` interface: greedy and batched beam search."""
