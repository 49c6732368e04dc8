"""The rule of unset speed switches: on for CUDA, off elsewhere; a set value wins."""

from __future__ import annotations

import pytest
import torch

from avsr.nn.switches import switch_on


@pytest.mark.parametrize(
    ("value", "device", "expected"),
    [
        (None, "cuda", True),
        (None, torch.device("cuda", 1), True),
        (None, "cpu", False),
        (None, "meta", False),
        (True, "cpu", True),
        (False, "cuda", False),
    ],
)
def test_none_means_on_for_cuda_only(value, device, expected):
    assert switch_on(value, device) is expected
