"""Training: the data pipeline, augmentation, batching and the one adapter to fairseq2's
recipe/trainer machinery.

Modules (importing this package is cheap; ``data`` and ``recipe`` import fairseq2, a few seconds):

- ``batching``: ``make_batches`` (length bucketing under a padded-frames cap), ``rng_for``.
- ``augment``: ``mix_at_snr``, ``make_babble_bank``, ``white_noise``, ``hflip``, ``time_mask``
  (the crop and pixel normalisation are `avsr.data.video`'s, shared with evaluation).
- ``media``: ``read_mouth_video`` (prepared grayscale crops, fast), ``read_wav``.
- ``data``: ``DatasetConfig`` (the ``dataset`` config section), ``AVBatch``, ``AVDataset``
  (manifests -> fairseq2 data readers with checkpointable state).
- ``recipe``: ``AVSRTrainConfig``, ``load_train_config``, ``prepare_run``, ``run_training``,
  ``AVSRRecipe``, ``AVSRTrainUnit``, ``AVSREvalUnit``, ``export_run`` (the only module that uses
  fairseq2's recipe API).
- ``export``: the exported model folder (weights + config + tokenizer), checkpoint averaging.
- ``runs``: a run directory without fairseq2: ``avsr_run.yaml``, checkpoints and their scores,
  averaged weights, metrics, ``default_output_dir``.

The command line is ``avsr-train`` (``avsr.cli.train``).
"""
