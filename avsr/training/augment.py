"""On-the-fly augmentation: noise at a signal-to-noise ratio, lip-crop jitter, flips, time masks.

Everything here is a pure function of its inputs and a ``numpy.random.Generator``, so a data
pipeline that seeds the generator from (run seed, rank, epoch, batch index) gives the same
augmentation on every run and after a resume.

Noise (as the seed paper and auto_avsr): *babble* is a bank of overlapping utterances of the
training corpus (each at unit RMS, on average ``utterances_per_mix`` talking at once), *white* is
Gaussian noise; either is scaled so that ``10 log10(P_speech / P_noise)`` equals the requested SNR,
with powers measured over the utterance.

Video (as auto_avsr): a random ``crop_size`` crop in training and the centre crop at evaluation
(96 -> 88), a horizontal flip of the whole clip, and adaptive time masking (up to ``window``
frames zeroed per ``stride`` frames); pixels are then normalised with the corpus mean and std
(0.421 / 0.165 on LRS3, auto_avsr's values).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

EPS = 1e-10


# ------------------------------------------------------------------------------------------ noise


def signal_power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def snr_db(clean: np.ndarray, noise: np.ndarray) -> float:
    """Measured SNR of ``clean`` against ``noise`` (the added part), in dB."""
    return 10.0 * np.log10(max(signal_power(clean), EPS) / max(signal_power(noise), EPS))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr: float) -> np.ndarray:
    """``clean + g * noise`` with ``g`` chosen so that the SNR is exactly ``snr`` dB.

    ``noise`` must have the length of ``clean``. Silent speech (zero power) is returned unchanged;
    the result is float32 and is not clipped (the model normalises the waveform).
    """
    if noise.shape != clean.shape:
        raise ValueError(f"noise shape {noise.shape} differs from speech shape {clean.shape}")
    p_clean = signal_power(clean)
    p_noise = signal_power(noise)
    if p_clean <= EPS or p_noise <= EPS:
        return clean.astype(np.float32, copy=True)
    gain = np.sqrt(p_clean / (p_noise * 10.0 ** (snr / 10.0)))
    return (clean.astype(np.float64) + gain * noise.astype(np.float64)).astype(np.float32)


def white_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(num_samples).astype(np.float32)


def cyclic_slice(bank: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``num_samples`` consecutive samples of ``bank`` from a random start, wrapping around."""
    if bank.size == 0:
        raise ValueError("empty noise bank")
    start = int(rng.integers(0, bank.size))
    index = (start + np.arange(num_samples)) % bank.size
    return bank[index]


def make_babble_bank(
    load: Callable[[int], np.ndarray],
    num_utterances: int,
    lengths: Sequence[int],
    total_samples: int,
    utterances_per_mix: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A cyclic babble track of ``total_samples`` from utterances ``load(i)``, ``0 <= i < num_utterances``.

    Utterances (each scaled to unit RMS) are added at random offsets, wrapping around the end,
    until on average ``utterances_per_mix`` overlap at any instant; the bank is scaled to unit RMS.
    ``lengths`` (samples of each utterance) sets how many utterances that takes.
    """
    if num_utterances < 1:
        raise ValueError("babble needs at least one utterance")
    mean_len = max(1.0, float(np.mean(lengths)))
    count = max(utterances_per_mix, int(np.ceil(utterances_per_mix * total_samples / mean_len)))
    bank = np.zeros(total_samples, dtype=np.float64)
    for _ in range(count):
        speech = np.asarray(load(int(rng.integers(0, num_utterances))), dtype=np.float64)
        if speech.size == 0:
            continue
        speech = speech[:total_samples] / np.sqrt(max(np.mean(speech**2), EPS))
        start = int(rng.integers(0, total_samples))
        index = (start + np.arange(speech.size)) % total_samples
        np.add.at(bank, index, speech)
    bank /= np.sqrt(max(np.mean(bank**2), EPS))
    return bank.astype(np.float32)


def time_mask(x: np.ndarray, window: int, stride: int, rng: np.random.Generator, value: float = 0) -> np.ndarray:
    """auto_avsr's adaptive time mask: for every ``stride`` steps of ``x`` (axis 0), zero a random
    span of up to ``window - 1`` steps at a random place. Returns a copy; ``window <= 1`` is a no-op."""
    length = x.shape[0]
    if window <= 1 or stride < 1 or length == 0:
        return x
    x = x.copy()
    num_masks = int((length + stride - 0.1) // stride)
    for _ in range(num_masks):
        width = int(rng.integers(0, window))
        if width == 0 or length - width <= 0:
            continue
        start = int(rng.integers(0, length - width))
        x[start : start + width] = value
    return x


# ------------------------------------------------------------------------------------------ video


def crop(video: np.ndarray, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """A ``size`` x ``size`` crop of every frame of ``video`` (T, H, W): the same random place for
    the whole clip when ``rng`` is given, else the centre. A frame smaller than ``size`` is an error."""
    height, width = video.shape[1:3]
    if height < size or width < size:
        raise ValueError(f"frames of {height}x{width} are smaller than the crop size {size}")
    if rng is None:
        top, left = (height - size) // 2, (width - size) // 2
    else:
        top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    return video[:, top : top + size, left : left + size]


def hflip(video: np.ndarray) -> np.ndarray:
    return video[:, :, ::-1]


def normalize_pixels(video: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 (…) -> float32 ``(x / 255 - mean) / std``."""
    scale = np.float32(1.0 / (255.0 * std))
    return video.astype(np.float32) * scale - np.float32(mean / std)
