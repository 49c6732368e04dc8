"""On-the-fly augmentation: noise at a signal-to-noise ratio, lip-crop jitter, flips, time masks.

Everything here is a pure function of its inputs and a ``numpy.random.Generator``, so a data
pipeline that seeds the generator from (run seed, rank, epoch, batch index) gives the same
augmentation on every run and after a resume.

Noise (as the seed paper and auto_avsr): *babble* is a bank of overlapping utterances of the
training corpus (each at unit RMS, on average ``utterances_per_mix`` talking at once), *white* is
Gaussian noise; either is scaled so that ``10 log10(P_speech / P_noise)`` equals the requested SNR,
with powers measured over the utterance.

Video (as auto_avsr): a horizontal flip of the whole clip and adaptive time masking (up to
``window`` frames zeroed per ``stride`` frames); the crop (random in training) and the pixel
normalisation are `avsr.data.video`'s, shared with evaluation.

Video corruptions (training on degraded video, and avsr-bench's corrupted test conditions): a
blurred mouth, an occluded mouth, frozen frames, the wrong face (another clip's video), heavy
noise at low contrast. Each maps uint8 frames (T, H, W) to uint8 frames of the same shape; the
transcript stays the true one, so a model trained on them learns to fall back on the audio.
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


def hflip(video: np.ndarray) -> np.ndarray:
    return video[:, :, ::-1]


# ------------------------------------------------------------------------------ video corruptions

#: What `corrupt_video` can do to a clip.
VIDEO_CORRUPTIONS = ("blur", "occlusion", "frozen", "wrong_face", "noise")


def _per_frame(video: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.empty(video.shape, dtype=np.uint8)
    for t in range(video.shape[0]):
        out[t] = fn(np.ascontiguousarray(video[t]))
    return out


def blur_video(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (sigma 2-5 px) or motion blur (a 9-21 px line at a random angle), one of the
    two at random, with one kernel for the whole clip: an out-of-focus or fast-moving mouth."""
    import cv2

    if rng.random() < 0.5:
        sigma = float(rng.uniform(2.0, 5.0))
        return _per_frame(video, lambda f: cv2.GaussianBlur(f, (0, 0), sigma, borderType=cv2.BORDER_REFLECT))
    length = int(rng.integers(9, 22))
    kernel = np.zeros((length, length), dtype=np.float32)
    kernel[length // 2, :] = 1.0
    rotation = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), float(rng.uniform(0.0, 180.0)), 1.0)
    kernel = cv2.warpAffine(kernel, rotation, (length, length))
    kernel /= max(float(kernel.sum()), EPS)
    return _per_frame(video, lambda f: cv2.filter2D(f, -1, kernel, borderType=cv2.BORDER_REFLECT))


def occlusion_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of a patch over the mouth: 45-75 % of the frame's height and width,
    its centre within 10 % of the frame's centre (a mouth crop is centred on the mouth)."""
    box_h = max(1, int(round(height * rng.uniform(0.45, 0.75))))
    box_w = max(1, int(round(width * rng.uniform(0.45, 0.75))))
    cy = height / 2 + rng.uniform(-0.1, 0.1) * height
    cx = width / 2 + rng.uniform(-0.1, 0.1) * width
    top = int(np.clip(round(cy - box_h / 2), 0, height - box_h))
    left = int(np.clip(round(cx - box_w / 2), 0, width - box_w))
    return top, left, top + box_h, left + box_w


def occlude_mouth(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A patch that hides the mouth for the whole clip (a hand, a microphone): `occlusion_box`,
    filled with one grey level or with a still noise texture, half each."""
    top, left, bottom, right = occlusion_box(video.shape[1], video.shape[2], rng)
    out = video.copy()
    if rng.random() < 0.5:
        out[:, top:bottom, left:right] = np.uint8(rng.integers(0, 256))
    else:
        out[:, top:bottom, left:right] = rng.integers(0, 256, size=(bottom - top, right - left), dtype=np.uint8)
    return out


def freeze_frames(video: np.ndarray, rng: np.random.Generator, min_fraction: float = 0.5) -> np.ndarray:
    """A stalled camera: a span of at least ``min_fraction`` of the clip (up to all of it) shows
    one frame, the span's first, over and over."""
    length = video.shape[0]
    if length < 2:
        return video.copy()
    span = int(rng.integers(max(2, int(np.ceil(min_fraction * length))), length + 1))
    start = int(rng.integers(0, length - span + 1))
    out = video.copy()
    out[start : start + span] = video[start]
    return out


def wrong_face(video: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """Another clip's frames in place of this clip's (someone else talking, or the same person
    saying something else), time-aligned from the first frame: truncated to this clip's length,
    or looped when shorter; resized when the frame sizes differ."""
    if donor.ndim != 3 or donor.shape[0] == 0:
        raise ValueError(f"the wrong-face donor must be frames (T, H, W), got shape {donor.shape}")
    if donor.shape[1:] != video.shape[1:]:
        import cv2

        size = (video.shape[2], video.shape[1])
        donor = np.stack([cv2.resize(np.ascontiguousarray(f), size, interpolation=cv2.INTER_AREA) for f in donor])
    index = np.arange(video.shape[0]) % donor.shape[0]
    return np.ascontiguousarray(donor[index], dtype=np.uint8)


def degrade_video(video: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bad light and a bad sensor: contrast cut to 10-35 % around the clip's mean and Gaussian
    pixel noise of 20-50 grey levels, new in every frame."""
    x = video.astype(np.float32)
    mean = float(x.mean()) if x.size else 0.0
    x = mean + (x - mean) * np.float32(rng.uniform(0.10, 0.35))
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(rng.uniform(20.0, 50.0))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def corrupt_video(
    video: np.ndarray, kind: str, rng: np.random.Generator, donor: np.ndarray | None = None
) -> np.ndarray:
    """``video`` (T, H, W) uint8 with the corruption ``kind`` (one of `VIDEO_CORRUPTIONS`; ``none``
    returns it unchanged); ``wrong_face`` takes its frames from ``donor``. Same shape and dtype."""
    if kind == "none":
        return video
    if kind == "blur":
        return blur_video(video, rng)
    if kind == "occlusion":
        return occlude_mouth(video, rng)
    if kind == "frozen":
        return freeze_frames(video, rng)
    if kind == "noise":
        return degrade_video(video, rng)
    if kind == "wrong_face":
        if donor is None:
            raise ValueError("the wrong_face corruption needs another clip's video (donor)")
        return wrong_face(video, donor)
    raise ValueError(f"unknown video corruption {kind!r} (expected none or one of {', '.join(VIDEO_CORRUPTIONS)})")
