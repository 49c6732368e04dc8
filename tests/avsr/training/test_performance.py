"""The ``performance`` switches: resolved for the device (None: on for CUDA, off on the CPU),
applied to fairseq2's sections and the model config, and each equal to the plain path on the
CPU within a stated tolerance (the same tiny model and batch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from fairseq2.recipe.internal.optim import _AdamWFactory

from avsr.models.avsr_model import AVSRModel
from avsr.training.avsr_config import load_train_config
from avsr.training.config_loading import TrainConfigError
from avsr.training.performance import Performance, PerformanceSection, apply_performance, compile_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_avsr_model import V, batch, tiny  # noqa: E402  (the model tests' tiny model and batch)

SWITCHES = ("autocast_bf16", "compile", "fused_optimizer", "sdpa", "channels_last")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model_config():
    return tiny(**{"encoder.kind": "conformer"})


# ---------------------------------------------------------------------- resolution and application
def test_unset_switches_are_on_for_cuda_and_off_on_the_cpu():
    assert Performance.resolve(PerformanceSection(), "cuda") == Performance(*(True,) * len(SWITCHES))
    assert Performance.resolve(PerformanceSection(), "cpu") == Performance(*(False,) * len(SWITCHES))
    mixed = Performance.resolve(PerformanceSection(compile=False, sdpa=True), "cuda")
    assert (mixed.compile, mixed.sdpa, mixed.autocast_bf16) == (False, True, True)


def test_on_cuda_the_defaults_map_onto_fairseq2s_own_switches():
    config = load_train_config(None)
    model_config, speed = apply_performance(config, _model_config(), "cuda")
    assert speed == Performance(*(True,) * len(SWITCHES))
    assert config.trainer.mixed_precision.mode == "auto" and config.trainer.mixed_precision.dtype == torch.bfloat16
    assert config.model.compile is True
    assert config.optimizer.config.impl == "fused"
    # fused attention and channels-last stay device-decided in the model (and its export)
    assert (model_config.kernels.sdpa, model_config.kernels.channels_last) == (None, None)


def test_on_the_cpu_the_defaults_leave_the_plain_path_and_explicit_values_win():
    config = load_train_config(None)
    model_config, _ = apply_performance(config, _model_config(), "cpu")
    assert config.trainer.mixed_precision.mode == "off" and config.model.compile is False
    assert config.optimizer.config.impl == "auto"
    config = load_train_config(
        None, ["performance.fused_optimizer=true", "performance.sdpa=true", "performance.channels_last=false"]
    )
    model_config, _ = apply_performance(config, _model_config(), "cpu")
    assert config.optimizer.config.impl == "fused"
    assert (model_config.kernels.sdpa, model_config.kernels.channels_last) == (True, False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["performance.compile=maybe"], "bad value for performance.compile"),
        (["performance.autocast_bf16=false", "trainer.mixed_precision.mode=auto"], "contradicts"),
        (["performance.fused_optimizer=true", "optimizer.name=adafactor"], "needs optimizer.name: adamw"),
        (["performance.fast=true"], "unknown config key performance.fast"),
    ],
)
def test_bad_switches_are_one_line_errors(overrides, message):
    with pytest.raises(TrainConfigError, match=message) as info:
        apply_performance(load_train_config(None, overrides), _model_config(), "cpu")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- each switch against the plain path
def _step_result(model: AVSRModel):
    out = model(*batch((10, 7)))
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out.loss.detach(), grads


def test_bf16_autocast_gives_the_fp32_loss_and_gradients_within_bf16_rounding():
    torch.manual_seed(0)
    model = AVSRModel(_model_config()).train()
    loss, grads = _step_result(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what fairseq2's trainer does with mode: auto
        bf16_loss, bf16_grads = _step_result(model)
    torch.testing.assert_close(bf16_loss, loss, rtol=0.02, atol=0.0)  # bf16 keeps 8 bits of mantissa
    flat, bf16_flat = (torch.cat([g[n].flatten() for n in sorted(grads)]) for g in (grads, bf16_grads))
    assert bf16_grads.keys() == grads.keys()
    assert torch.nn.functional.cosine_similarity(flat, bf16_flat, dim=0) > 0.99


def test_fused_adamw_steps_like_the_default_one():
    """``performance.fused_optimizer`` -> ``impl: fused`` -> fairseq2's AdamW factory: two steps
    on the same gradients give the weights of the default (foreach) implementation within float32
    rounding. (Same gradients: parameters whose true gradient is zero, such as attention key
    biases, get rounding noise that Adam normalises to full-size steps.)"""
    config = load_train_config(None, ["performance.fused_optimizer=true"])
    apply_performance(config, _model_config(), "cpu")
    assert config.optimizer.config.impl == "fused"
    models, optimizers = [], []
    for impl in ("auto", "fused"):
        torch.manual_seed(0)
        models.append(AVSRModel(_model_config()).train())
        config.optimizer.config.impl = impl
        optimizers.append(_AdamWFactory(models[-1]).create(config.optimizer.config))
    assert [o.defaults["fused"] for o in optimizers] == [None, True]
    for _ in range(2):
        _, grads = _step_result(models[0])
        for model, optimizer in zip(models, optimizers, strict=True):
            for name, param in model.named_parameters():
                param.grad = grads[name].clone() if name in grads else None
            optimizer.step()
    fused = models[1].state_dict()
    for name, value in models[0].state_dict().items():
        torch.testing.assert_close(fused[name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_compiled_layers_give_the_same_loss_and_gradients():
    """``performance.compile`` -> fairseq2 calls `compile_model` -> every layer compiled in place.
    On the CPU with the ``aot_eager`` backend (graph capture and AOT autograd, no C++ code
    generation: inductor gives the same numbers here but takes minutes on 2 cores)."""
    torch.manual_seed(0)
    config = tiny(**{"encoder.kind": "conformer", "encoder.layers": 1, "decoder.layers": 1})
    model = AVSRModel(config).train()
    keys = list(model.state_dict())
    loss, grads = _step_result(model)
    compile_model(model, backend="aot_eager", dynamic=False)
    compiled_loss, compiled_grads = _step_result(model)
    assert list(model.state_dict()) == keys  # checkpoints unchanged by compiling
    torch.testing.assert_close(compiled_loss, loss, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(compiled_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    assert V == model.vocab_size
