"""The log-mel audio front-end: 25 Hz output, padding invariance, and it trains inside the model."""

from __future__ import annotations

import torch

from avsr.models.config import FbankAudioConfig
from avsr.models.frontends import build_audio_frontend


def test_fbank_frontend_frames_and_padding_invariance():
    torch.manual_seed(0)
    frontend = build_audio_frontend(FbankAudioConfig(dim=64)).eval()
    long, short = torch.randn(1, 50 * 640), torch.randn(1, 31 * 640 + 100)
    batch = torch.zeros(2, long.shape[1])
    batch[0], batch[1, : short.shape[1]] = long[0], short[0]
    with torch.no_grad():
        out, lengths = frontend(batch, torch.tensor([long.shape[1], short.shape[1]]))
        alone, alone_lengths = frontend(short, torch.tensor([short.shape[1]]))
    assert frontend.output_dim == 64 and out.shape == (2, 50, 64)
    assert lengths.tolist() == [50, 31] and alone_lengths.tolist() == [31]
    assert torch.allclose(out[1, :31], alone[0], atol=1e-5)
    assert out[1, 31:].abs().max() == 0
    # every length (odd and even numbers of mel frames and of frames after the first conv)
    longest = torch.randn(1, 40 * 640)
    for samples in range(12 * 640, 12 * 640 + 1000, 160):
        piece = longest[:, :samples]
        padded = torch.cat(
            [piece, torch.randn(1, longest.shape[1] - samples)], dim=1
        )  # noise, not zeros, after the end
        with torch.no_grad():
            out, lengths = frontend(torch.cat([longest, padded]), torch.tensor([longest.shape[1], samples]))
            alone, _ = frontend(piece, torch.tensor([samples]))
        n = int(lengths[1])
        assert torch.allclose(out[1, :n], alone[0, :n], atol=1e-5), samples
