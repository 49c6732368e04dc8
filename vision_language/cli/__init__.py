"""Command-line entry points of the vision_language package (vl-synth, vl-embed, vl-train, vl-eval, vl-align)."""
