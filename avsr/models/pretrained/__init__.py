"""Published AVSR models, rebuilt from our building blocks and loaded from their own checkpoints
(``avsr-convert``): auto_avsr (`auto_avsr`) and AV-HuBERT (`avhubert`). Each module offers
``build_from_config(config: dict)`` (the model family `avsr.models.io` dispatches on) and a
converter from the published checkpoint files to our model folder."""
