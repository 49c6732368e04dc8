"""The noise slider's mixing: the SNR asked for, the same noise at every SNR, refused settings."""

from __future__ import annotations

import numpy as np
import pytest

from avsr.serve.errors import ServeError
from avsr.serve.noise import BABBLE_TALKERS, NoiseSetting, babble_of, noisy


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    t = np.arange(24000) / 16000
    return (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)


@pytest.mark.parametrize("kind", ["babble", "white"])
def test_noise_is_mixed_at_the_snr_asked(speech, kind):
    for snr in (20.0, 0.0, -5.0):
        noise = noisy(speech, NoiseSetting(kind, snr)) - speech
        measured = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
        assert measured == pytest.approx(snr, abs=0.01)
    # the same noise at every level: the slider changes the level, not the noise
    low, high = (noisy(speech, NoiseSetting(kind, s)) - speech for s in (0.0, 10.0))
    assert np.corrcoef(low, high)[0, 1] > 0.999


def test_babble_is_the_clips_own_voice_talking_over_itself(speech):
    babble = babble_of(speech)
    assert babble.shape == speech.shape and np.sqrt(np.mean(babble**2)) == pytest.approx(1.0, rel=1e-3)
    assert np.corrcoef(babble, speech)[0, 1] < 0.9  # several copies at other offsets, not the clip
    assert BABBLE_TALKERS > 1


@pytest.mark.parametrize(
    ("kind", "snr", "message"),
    [
        ("pink", 0.0, "noise kind must be one of babble, white, got 'pink'"),
        ("babble", 40.0, "SNR must be between -10 and 30 dB, got 40"),
    ],
)
def test_settings_out_of_range_are_refused(kind, snr, message):
    with pytest.raises(ServeError, match=f"^{message}$"):
        NoiseSetting(kind, snr)
