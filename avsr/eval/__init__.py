"""Evaluation: noise sweeps with WER/CER per modality (scored by `avsr.data.wer`), validation curves."""
