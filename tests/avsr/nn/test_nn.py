"""avsr.nn: the frozen-backbone wrapper, the projector family and the layer manager that the AVSR
models and vision_language share."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avsr.nn import FreezeSchedule, FrozenBackbone, LayerManager, LayerManagerConfig, ProjectorConfig, build_projector


def _backbone() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.BatchNorm1d(8))


def test_a_frozen_backbone_builds_no_graph_and_keeps_its_statistics():
    torch.manual_seed(0)
    frozen = FrozenBackbone(_backbone())
    stats = frozen.module[2].running_mean.clone()
    frozen.train()
    assert not frozen.module.training and all(not p.requires_grad for p in frozen.parameters())
    x = torch.randn(5, 4)
    y = frozen(x)
    assert not y.requires_grad and torch.equal(frozen.module[2].running_mean, stats)
    assert torch.equal(y, frozen(x))  # no dropout
    assert frozen.trainable_parameters() == []


def test_a_scheduled_backbone_trains_from_its_step():
    frozen = FrozenBackbone(_backbone(), FreezeSchedule(unfreeze_at_step=3))
    frozen.train()
    frozen.set_step(2)
    assert frozen.frozen and not frozen(torch.randn(5, 4)).requires_grad
    frozen.set_step(3)
    assert not frozen.frozen and frozen.module.training
    assert frozen(torch.randn(5, 4)).requires_grad
    assert len(frozen.trainable_parameters()) == len(list(frozen.module.parameters()))
    with pytest.raises(ValueError, match="unfreeze_at_step"):
        FreezeSchedule(-1)


def test_attributes_of_the_wrapped_module_pass_through():
    module = nn.Linear(3, 2)
    module.output_dim = 2  # type: ignore[attr-defined]
    assert FrozenBackbone(module).output_dim == 2


@pytest.mark.parametrize("kind", ["linear", "mlp", "gated_mlp", "token"])
@pytest.mark.parametrize("input_norm", [False, True])
def test_every_projector_maps_any_leading_shape(kind: str, input_norm: bool):
    proj = build_projector(ProjectorConfig(kind, input_norm=input_norm), 12, 5)
    assert proj(torch.randn(2, 7, 12)).shape == (2, 7, 5)
    loss = proj(torch.randn(3, 12)).square().sum()
    loss.backward()
    assert all(p.grad is not None for p in proj.parameters())


def test_a_plain_linear_projector_keeps_a_linear_layers_checkpoint_keys():
    proj = build_projector(ProjectorConfig("linear"), 6, 4)
    assert set(proj.state_dict()) == {"weight", "bias"}
    proj.load_state_dict(nn.Linear(6, 4).state_dict(), strict=True)


def test_the_gated_projector_is_sails_star_mlp():
    """g(ReLU6(f1 x) * f2 x) with the hidden width 8x the input, as SAIL's default."""
    proj = build_projector(ProjectorConfig("gated_mlp"), 4, 3)
    assert proj.gate.out_features == 32
    x = torch.randn(6, 4)
    expected = proj.out(torch.nn.functional.relu6(proj.gate(x)) * proj.value(x))
    assert torch.allclose(proj(x), expected)


def test_the_token_projector_is_a_linear_path_plus_a_residual_mlp():
    proj = build_projector(ProjectorConfig("token", hidden_factor=2.0), 4, 3)
    x = torch.randn(6, 4)
    assert torch.allclose(proj(x), proj.linear(x) + proj.fc2(torch.nn.functional.gelu(proj.fc1(x))))


def test_bad_projector_settings_are_errors():
    with pytest.raises(ValueError, match="kind"):
        ProjectorConfig("conv")
    with pytest.raises(ValueError, match="hidden_factor"):
        ProjectorConfig("mlp", hidden_factor=0)


@pytest.mark.parametrize("kind", ["static", "adaptive"])
def test_the_manager_takes_a_convex_combination_of_the_normalised_layers(kind: str):
    manager = LayerManager(LayerManagerConfig(kind), num_layers=3, dim=8)
    x = torch.randn(4, 3, 8)
    weights = manager.layer_weights(x)
    assert torch.allclose(weights.sum(dim=1), torch.ones(()))
    normed = torch.stack([manager.norms[i](x[:, i]) for i in range(3)], dim=1)
    assert torch.allclose(manager(x), normed.mean(dim=1), atol=1e-6)  # equal weights at the start
    with pytest.raises(ValueError, match="layers"):
        manager(torch.randn(4, 2, 8))


def test_the_manager_learns_to_pick_the_informative_layer():
    """Only layer 2 carries the target: after training most of the weight sits on it."""
    torch.manual_seed(0)
    manager = LayerManager(LayerManagerConfig("static", weight_type="scalar"), num_layers=3, dim=4)
    head = nn.Linear(4, 1)
    optimizer = torch.optim.Adam([*manager.parameters(), *head.parameters()], lr=0.05)
    for _ in range(200):
        x = torch.randn(64, 3, 4)
        target = x[:, 2, :1] * 3.0
        loss = (head(manager(x)) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = manager.layer_weights(torch.randn(1, 3, 4)).flatten()
    assert weights[2] > 0.8


def test_the_avsr_fusion_takes_a_projector_from_the_family():
    from avsr.models.avsr_model import AVSRModel
    from avsr.models.config import AVSRConfig, ConfigError

    config = AVSRConfig.tiny(12)
    config.fusion.projector = "gated_mlp"
    model = AVSRModel(config)
    assert type(model.fusion.proj).__name__ == "GatedMLPProjector"
    with pytest.raises(ConfigError, match="projector"):
        type(config.fusion)(projector="conv")


def test_state_problems_name_each_kind_of_mismatch_in_one_line():
    from avsr.nn.state import name_list, state_problems

    assert name_list([f"k{i}" for i in range(10, 0, -1)], limit=3) == "k1, k10, k2 ... (+7 more)"
    expected = {"a": torch.zeros(2), "b": torch.zeros(3), "c": (4, 5)}
    given = {"b": torch.zeros(3), "c": torch.zeros(5, 4), "z": torch.zeros(1)}
    assert state_problems(expected, dict(expected)) == []
    problems = state_problems(expected, given, missing="weight(s) not in the file", display=str.upper)
    assert problems == [
        "1 weight(s) not in the file: A",
        "1 unexpected key(s): Z",
        "1 shape mismatch(es): C (5, 4) vs (4, 5)",
    ]
