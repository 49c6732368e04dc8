"""The noise slider's noise: babble or white noise mixed into a clip's audio at an SNR.

The mixing and the babble track are avsr-bench's (`avsr.training.augment`, `avsr.eval.bench.noise_for`),
so a clip on the page degrades as the benchmark's test clips do. avsr-bench builds its babble from
the test set's other utterances; the server has only the clip, so its babble is the clip's own
speech, several copies at random offsets talking over each other (the same person's voice: harder
to tune out than strangers', which makes the slider's differences between modalities plain).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avsr.eval.bench import NOISE_KINDS, noise_for
from avsr.media.constants import AUDIO_RATE
from avsr.serve.errors import ServeError
from avsr.training import augment
from avsr.training.batching import rng_for

#: talkers heard at once in the babble (avsr-bench's default is 20 strangers; one voice blurs sooner)
BABBLE_TALKERS = 6
#: the SNR range the slider offers, dB
SNR_RANGE = (-10.0, 30.0)


@dataclass(frozen=True)
class NoiseSetting:
    kind: str  # babble or white
    snr_db: float

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ServeError(f"noise kind must be one of {', '.join(NOISE_KINDS)}, got {self.kind!r}")
        low, high = SNR_RANGE
        if not low <= self.snr_db <= high:
            raise ServeError(f"SNR must be between {low:g} and {high:g} dB, got {self.snr_db:g}")


def babble_of(audio: np.ndarray, seed: int = 0) -> np.ndarray:
    """A cyclic babble track as long as ``audio`` (at least 1 s) from copies of ``audio`` itself: (S,) float32."""
    length = max(audio.shape[0], AUDIO_RATE)
    return augment.make_babble_bank(
        lambda _: audio, 1, [audio.shape[0]], length, BABBLE_TALKERS, rng_for(seed, "serve-babble")
    )


def noisy(audio: np.ndarray, setting: NoiseSetting, seed: int = 0) -> np.ndarray:
    """``audio`` (S,) float32 with ``setting``'s noise at its SNR; the same noise at every SNR
    (avsr-bench's rule), so moving the slider changes the level only."""
    babble = babble_of(audio, seed) if setting.kind == "babble" else None
    noise = noise_for(0, setting.kind, audio.shape[0], babble, seed)
    return augment.mix_at_snr(audio, noise, setting.snr_db)


__all__ = ["BABBLE_TALKERS", "NoiseSetting", "SNR_RANGE", "babble_of", "noisy"]
