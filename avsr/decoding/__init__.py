"""Decoding: greedy CTC, CTC prefix scoring, hybrid CTC/attention beam search."""
