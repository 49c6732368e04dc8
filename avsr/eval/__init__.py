"""Evaluation: WER/CER with explicit normalisation, noise sweeps, real-time factor."""
