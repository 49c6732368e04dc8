"""vl-train: projector training on cached encoder features, on fairseq2's trainer (as avsr-train)."""
