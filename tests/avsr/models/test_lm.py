"""The token language model: causal, never predicts the blank, saved and loaded as a model folder."""

from __future__ import annotations

import torch

from avsr.models.io import load_model, save_model
from avsr.models.lm import TokenLM, TokenLMConfig

CONFIG = TokenLMConfig(vocab_size=9, model_dim=16, layers=2, heads=2, ffn_dim=32, dropout=0.0, max_len=32)


def test_a_position_sees_only_the_tokens_before_it() -> None:
    torch.manual_seed(0)
    lm = TokenLM(CONFIG).eval()
    tokens = torch.tensor([[8, 1, 2, 3, 4]])
    changed = tokens.clone()
    changed[0, 3] = 5  # a later token changes nothing before it
    with torch.no_grad():
        a, b = lm(tokens), lm(changed)
    assert torch.allclose(a[0, :3], b[0, :3], atol=1e-6) and not torch.allclose(a[0, 3:], b[0, 3:])
    assert torch.isneginf(a[..., 0]).all()  # the blank
    assert torch.allclose(a.exp().sum(-1), torch.ones(1, 5), atol=1e-5)


def test_sentence_log_prob_is_the_sum_over_its_tokens_and_eos() -> None:
    torch.manual_seed(1)
    lm = TokenLM(CONFIG).eval()
    units = torch.tensor([[1, 2, 3], [4, 0, 0]])  # the second is one unit long (0: padding)
    with torch.no_grad():
        got = lm.sentence_log_prob(units, torch.tensor([3, 1]))
        steps = lm(torch.tensor([[8, 4]]))[0]
    assert torch.isclose(got[1], steps[0, 4] + steps[1, 8], atol=1e-5)  # P(4 | sos) P(eos | sos 4)
    with torch.no_grad():
        whole = lm(torch.tensor([[8, 1, 2, 3]]))[0]
    assert torch.isclose(got[0], whole[0, 1] + whole[1, 2] + whole[2, 3] + whole[3, 8], atol=1e-5)


def test_the_lm_is_a_model_folder_of_its_own_family(tmp_path) -> None:
    torch.manual_seed(2)
    lm = TokenLM(CONFIG).eval()
    save_model(tmp_path / "lm", lm, extra={"tokenizer_fingerprint": "x"})
    loaded = load_model(tmp_path / "lm")
    assert isinstance(loaded, TokenLM) and loaded.config == CONFIG
    tokens = torch.tensor([[8, 1, 2]])
    with torch.no_grad():
        assert torch.equal(lm(tokens), loaded(tokens))
