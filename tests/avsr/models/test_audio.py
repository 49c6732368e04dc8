"""wav2vec 2.0 audio front-end (avsr.models.audio) and its checkpoint converters (avsr.models.convert).

Parity: tiny random ``transformers.Wav2Vec2Model``s (real 7-layer CNN at 16 channels, 2 layers of
width 32) are saved with ``save_pretrained`` and rewritten in fairseq1's layout; each is loaded
through our converters and the fairseq2 encoder output is compared with transformers'
``last_hidden_state`` (eval mode). The max relative differences are printed (``pytest -rP``) and
recorded as test properties.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import types
import typing
from pathlib import Path

import pytest
import torch

from avsr.models.audio import (
    MIN_SAMPLES,
    WAV2VEC2_ARCHS,
    Wav2Vec2FrontEnd,
    Wav2Vec2FrontEndConfig,
    build_wav2vec2_frontend,
    frames_for_samples,
    load_pretrained,
)
from avsr.models.convert import (
    CheckpointError,
    convert_checkpoint,
    safe_torch_load,
    save_converted,
)
from avsr.models.convert import (
    main as convert_main,
)
from avsr.models.convert.common import parse_conv_layers

transformers = pytest.importorskip("transformers")

TOL = 1e-4  # relative, converter parity
PAD_TOL = 1e-5  # absolute, padding invariance

# ------------------------------------------------------------------ tiny Hugging Face models
VARIANTS = {
    # base-style: GroupNorm in the first conv block, no conv bias, post-LN transformer; safetensors
    "group_post": dict(feat_extract_norm="group", do_stable_layer_norm=False, conv_bias=False, safe=True),
    # Large LV-60 style: LayerNorm in every conv block, conv bias, pre-LN ("stable") transformer; .bin
    "layer_pre": dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, safe=False),
}


def _hf_model(variant: str, seed: int):
    opts = dict(VARIANTS[variant])
    safe = opts.pop("safe")
    config = transformers.Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        **opts,
    )
    torch.manual_seed(seed)
    model = transformers.Wav2Vec2Model(config)
    with torch.no_grad():  # move every tensor off its default init (LN weights 1, biases 0 ...)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval(), safe


@pytest.fixture(scope="session")
def hf_checkpoints(tmp_path_factory):
    """variant -> (model directory, the transformers model in eval mode)."""
    out = {}
    for i, variant in enumerate(VARIANTS):
        model, safe = _hf_model(variant, seed=10 + i)
        directory = tmp_path_factory.mktemp(f"hf_{variant}")
        model.save_pretrained(directory, safe_serialization=safe)
        expected = "model.safetensors" if safe else "pytorch_model.bin"
        assert (directory / expected).is_file()
        out[variant] = (directory, model)
    return out


# ------------------------------------------------------------------ fairseq1 layout
_HF_TO_FAIRSEQ1 = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$", "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$", "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.(weight_g|weight_v|bias)$", r"encoder.pos_conv.0.\1"),
    (r"^encoder\.layer_norm\.", "encoder.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.attention\.out_proj\.", r"encoder.layers.\1.self_attn.out_proj."),
    (r"^encoder\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"^encoder\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"^encoder\.layers\.(\d+)\.final_layer_norm\.", r"encoder.layers.\1.final_layer_norm."),
    (r"^masked_spec_embed$", "mask_emb"),
]


def _fairseq1_state_dict(hf_model) -> dict[str, torch.Tensor]:
    """The fairseq1 wav2vec 2.0 pretraining state dict holding the same weights as ``hf_model``
    (key names as fairseq/models/wav2vec/wav2vec2.py and torchaudio's import_fairseq_model)."""
    layer_norm_convs = hf_model.config.feat_extract_norm == "layer"
    sd = {}
    for key, value in hf_model.state_dict().items():
        m = re.match(r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(.*)$", key)
        if m:  # GroupNorm: Sequential(conv, dropout, GroupNorm, GELU); LayerNorm: (..., Sequential(T, LN, T), GELU)
            new = f"feature_extractor.conv_layers.{m.group(1)}.2.{'1.' if layer_norm_convs else ''}{m.group(2)}"
        else:
            for pattern, repl in _HF_TO_FAIRSEQ1:
                if re.search(pattern, key):
                    new = re.sub(pattern, repl, key, count=1)
                    break
            else:
                raise AssertionError(f"unmapped HF key {key}")
        sd[new] = value.clone()
    dim, feat = hf_model.config.hidden_size, hf_model.config.conv_dim[-1]
    # pretraining-only modules, which the converter must drop
    sd["quantizer.vars"] = torch.randn(1, 2 * 8, 12)
    sd["quantizer.weight_proj.weight"] = torch.randn(16, feat)
    sd["quantizer.weight_proj.bias"] = torch.randn(16)
    sd["project_q.weight"] = torch.randn(24, 24)
    sd["project_q.bias"] = torch.randn(24)
    sd["final_proj.weight"] = torch.randn(24, dim)
    sd["final_proj.bias"] = torch.randn(24)
    return sd


def _fairseq1_model_args(hf_model) -> dict:
    c = hf_model.config
    descs = " + ".join(f"[({d}, {k}, {s})]" for d, k, s in zip(c.conv_dim, c.conv_kernel, c.conv_stride))
    return dict(
        _name="wav2vec2",
        extractor_mode="layer_norm" if c.feat_extract_norm == "layer" else "default",
        layer_norm_first=bool(c.do_stable_layer_norm),
        conv_bias=bool(c.conv_bias),
        encoder_layers=c.num_hidden_layers,
        encoder_embed_dim=c.hidden_size,
        encoder_ffn_embed_dim=c.intermediate_size,
        encoder_attention_heads=c.num_attention_heads,
        activation_fn="gelu",
        conv_feature_layers=descs,
        conv_pos=c.num_conv_pos_embeddings,
        conv_pos_groups=c.num_conv_pos_embedding_groups,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        dropout_input=0.0,
        final_dim=24,
        latent_vars=8,
        latent_groups=2,
        quantize_targets=True,
    )


def _fake_omegaconf():
    """Stand-ins for omegaconf's DictConfig/AnyNode/ContainerMetadata (omegaconf is not
    installed): same module paths and pickled state layout, so the file looks like a fairseq1
    checkpoint whose ``cfg`` is an omegaconf object."""
    mods = {
        name: types.ModuleType(name)
        for name in ("omegaconf", "omegaconf.dictconfig", "omegaconf.nodes", "omegaconf.base")
    }

    class ContainerMetadata:
        def __init__(self):
            self.ref_type, self.object_type, self.key_type, self.optional = typing.Any, dict, typing.Any, True

    class AnyNode:
        def __init__(self, value):
            self._val, self._parent, self._metadata = value, None, ContainerMetadata()

    class DictConfig:
        def __init__(self, content):
            self._content = {k: (v if isinstance(v, DictConfig) else AnyNode(v)) for k, v in content.items()}
            self._metadata, self._parent = ContainerMetadata(), None

        def __getstate__(self):
            return dict(self.__dict__)

        def __setstate__(self, state):
            self.__dict__.update(state)

    for cls, mod in (
        (ContainerMetadata, "omegaconf.base"),
        (AnyNode, "omegaconf.nodes"),
        (DictConfig, "omegaconf.dictconfig"),
    ):
        cls.__module__, cls.__qualname__ = mod, cls.__name__
        setattr(mods[mod], cls.__name__, cls)
    return mods, DictConfig


@pytest.fixture(scope="session")
def fairseq1_checkpoints(hf_checkpoints, tmp_path_factory):
    """layout -> (.pt path, the HF reference model). Layouts: ``args`` (argparse.Namespace, legacy
    non-zip torch format), ``cfg`` (plain dicts, newer fairseq), ``omegaconf`` (DictConfig objects),
    ``finetuned`` (``w2v_encoder.w2v_model.*`` keys with ``w2v_args`` and a CTC head)."""
    root = tmp_path_factory.mktemp("fairseq1")
    out = {}
    _, group_model = hf_checkpoints["group_post"]
    _, layer_model = hf_checkpoints["layer_pre"]

    args = argparse.Namespace(**_fairseq1_model_args(group_model), normalize=False, arch="wav2vec2")
    path = root / "args_legacy.pt"
    torch.save(
        {"args": args, "model": _fairseq1_state_dict(group_model), "optimizer_history": [{"num_updates": 3}]},
        path,
        _use_new_zipfile_serialization=False,
    )
    out["args"] = (path, group_model)

    cfg = {"model": _fairseq1_model_args(layer_model), "task": {"_name": "audio_pretraining", "normalize": True}}
    path = root / "cfg_dict.pt"
    torch.save({"args": None, "cfg": cfg, "model": _fairseq1_state_dict(layer_model)}, path)
    out["cfg"] = (path, layer_model)

    mods, DictConfig = _fake_omegaconf()
    saved = {name: sys.modules.get(name) for name in mods}
    sys.modules.update(mods)
    try:
        cfg_obj = DictConfig(
            {
                "model": DictConfig(_fairseq1_model_args(layer_model)),
                "task": DictConfig({"_name": "audio_pretraining", "normalize": True}),
            }
        )
        path = root / "cfg_omegaconf.pt"
        torch.save({"args": None, "cfg": cfg_obj, "model": _fairseq1_state_dict(layer_model)}, path)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    out["omegaconf"] = (path, layer_model)

    sd = {
        f"w2v_encoder.w2v_model.{k}": v
        for k, v in _fairseq1_state_dict(group_model).items()
        if not k.startswith(("quantizer.", "project_q.", "final_proj."))
    }
    sd["w2v_encoder.proj.weight"], sd["w2v_encoder.proj.bias"] = torch.randn(10, 32), torch.randn(10)
    w2v_args = {"model": _fairseq1_model_args(group_model), "task": {"normalize": False}}
    path = root / "finetuned.pt"
    torch.save(
        {"cfg": {"model": {"_name": "wav2vec_ctc", "w2v_args": w2v_args}, "task": {"normalize": False}}, "model": sd},
        path,
    )
    out["finetuned"] = (path, group_model)
    return out


# ------------------------------------------------------------------ helpers
def _waveform(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, samples, generator=g)


def _rel_diff(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).abs().max() / ref.abs().max())


def _parity(frontend: Wav2Vec2FrontEnd, hf_model, hidden_index: int | None = None) -> float:
    frontend.eval()
    wav = _waveform(2, 16000, seed=1)
    lens = torch.full((2,), 16000, dtype=torch.int64)
    with torch.no_grad():
        ours, ours_lens = frontend.extract_features(wav, lens)
        out = hf_model(wav, output_hidden_states=hidden_index is not None)
    ref = out.last_hidden_state if hidden_index is None else out.hidden_states[hidden_index]
    assert ours.shape == ref.shape and ours_lens.tolist() == [ref.size(1)] * 2
    return _rel_diff(ours, ref)


def _report(record_property, name: str, value: float) -> None:
    record_property(name, value)
    print(f"{name}: max relative difference {value:.2e}")


# ------------------------------------------------------------------ converter parity
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_hf_converter_parity(hf_checkpoints, variant, record_property):
    directory, hf_model = hf_checkpoints[variant]
    config = Wav2Vec2FrontEndConfig.from_pretrained(directory, normalize_waveform=False)
    assert config.pretrained == str(directory)
    frontend = build_wav2vec2_frontend(config)
    enc = frontend.encoder_config
    assert (enc.norm_order.name, enc.feature_extractor_layer_norm_convs) == (
        ("PRE", True) if variant == "layer_pre" else ("POST", False)
    )
    rel = _parity(frontend, hf_model)
    _report(record_property, f"hf[{variant}] last_hidden_state", rel)
    assert rel < TOL


@pytest.mark.parametrize("layout", ["args", "cfg", "omegaconf", "finetuned"])
def test_fairseq1_converter_parity(fairseq1_checkpoints, layout, record_property):
    path, hf_model = fairseq1_checkpoints[layout]
    converted = convert_checkpoint(path)
    assert converted.source_format == "fairseq1" and not converted.config_from_shapes
    if layout == "finetuned":
        assert converted.dropped_keys == ["w2v_encoder.proj.bias", "w2v_encoder.proj.weight"]
    else:
        assert {k.split(".")[0] for k in converted.dropped_keys} == {"quantizer", "project_q", "final_proj"}
    assert converted.normalize_waveform is (layout in ("cfg", "omegaconf"))
    frontend = build_wav2vec2_frontend(Wav2Vec2FrontEndConfig.from_pretrained(path, normalize_waveform=False))
    rel = _parity(frontend, hf_model)
    _report(record_property, f"fairseq1[{layout}] last_hidden_state", rel)
    assert rel < TOL


def test_fairseq1_architecture_from_shapes(fairseq1_checkpoints, tmp_path):
    path, hf_model = fairseq1_checkpoints["cfg"]
    ckpt = safe_torch_load(path)
    bare = tmp_path / "no_config.pt"
    torch.save({"model": dict(ckpt["model"])}, bare)
    converted = convert_checkpoint(bare)
    assert converted.config_from_shapes
    enc = converted.encoder_config
    assert (enc.model_dim, enc.num_encoder_layers, enc.ffn_inner_dim, enc.num_pos_conv_groups) == (32, 2, 64, 4)
    assert enc.norm_order.name == "PRE" and enc.feature_extractor_bias
    # heads are a guess (dim/64 -> 1) without a config: give the real value
    config = Wav2Vec2FrontEndConfig.from_pretrained(
        bare, encoder={"num_encoder_attn_heads": 4}, normalize_waveform=False
    )
    assert _parity(build_wav2vec2_frontend(config), hf_model) < TOL


@pytest.mark.parametrize("layer", [0, 1])
def test_intermediate_layer_matches_hf_hidden_states(hf_checkpoints, layer):
    for variant in VARIANTS:
        directory, hf_model = hf_checkpoints[variant]
        config = Wav2Vec2FrontEndConfig.from_pretrained(directory, layer=layer, normalize_waveform=False)
        frontend = build_wav2vec2_frontend(config)
        assert _parity(frontend, hf_model, hidden_index=layer) < TOL
        # layers above the selected one never train
        assert not any(p.requires_grad for p in frontend.encoder.layers[layer].parameters())


def test_converted_safetensors_round_trip_and_cli(hf_checkpoints, tmp_path):
    directory, hf_model = hf_checkpoints["layer_pre"]
    out = tmp_path / "w2v.safetensors"
    assert convert_main([str(directory), str(out)]) == 0
    converted = convert_checkpoint(out)
    assert converted.source_format == "avsr" and converted.encoder_config is not None
    config = Wav2Vec2FrontEndConfig.from_pretrained(out, normalize_waveform=False)
    assert config.encoder["norm_order"] == "pre"
    assert _parity(build_wav2vec2_frontend(config), hf_model) < TOL
    # the same weights as a fairseq2-format .pt ({"model": sd}, fairseq2 names, no architecture)
    fs2 = tmp_path / "fs2.pt"
    torch.save({"model": {**converted.state_dict, "final_proj.weight": torch.zeros(3, 32)}}, fs2)
    frontend = Wav2Vec2FrontEnd(config)
    info = load_pretrained(frontend, fs2)
    assert info.source_format == "fairseq2" and info.dropped_keys == ["final_proj.weight"]
    assert _parity(frontend, hf_model) < TOL


# ------------------------------------------------------------------ strict loading
def _tiny_like(hf_checkpoints, variant="group_post", **options) -> tuple[Wav2Vec2FrontEndConfig, Path]:
    """A config with the architecture of an HF test checkpoint, without loading it."""
    directory, _ = hf_checkpoints[variant]
    config = Wav2Vec2FrontEndConfig.from_pretrained(directory, **options)
    return dataclasses.replace(config, pretrained=None), directory


@pytest.mark.parametrize(
    "edit, message",
    [
        ("drop", "1 missing key(s): encoder.layers.1.ffn.inner_proj.bias"),
        ("extra", "1 unexpected key(s): encoder.layers.7.ffn.inner_proj.bias"),
        ("shape", "1 shape mismatch(es): encoder.layers.0.ffn.output_proj.bias (31,) vs (32,)"),
    ],
)
def test_strict_loading_refuses_missing_extra_or_misshapen(hf_checkpoints, tmp_path, edit, message):
    config, directory = _tiny_like(hf_checkpoints)
    converted = convert_checkpoint(directory)
    sd = converted.state_dict
    if edit == "drop":
        del sd["encoder.layers.1.ffn.inner_proj.bias"]
    elif edit == "extra":
        sd["encoder.layers.7.ffn.inner_proj.bias"] = torch.zeros(64)
    else:
        sd["encoder.layers.0.ffn.output_proj.bias"] = torch.zeros(31)
    path = save_converted(converted, tmp_path / f"{edit}.safetensors")
    frontend = Wav2Vec2FrontEnd(config)
    before = {k: v.clone() for k, v in frontend.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_pretrained(frontend, path)
    text = str(err.value)
    assert "\n" not in text and str(path) in text and message in text
    assert all(torch.equal(before[k], v) for k, v in frontend.state_dict().items())  # nothing loaded


def test_strict_loading_refuses_other_architecture(hf_checkpoints):
    # same shapes, different computation: pre-LN checkpoint into a post-LN model
    config, _ = _tiny_like(hf_checkpoints, "group_post")
    directory, _ = hf_checkpoints["layer_pre"]
    with pytest.raises(CheckpointError, match=r"architecture differs.*norm_order: model post != checkpoint pre"):
        load_pretrained(Wav2Vec2FrontEnd(config), directory)
    # and a different depth
    deeper = Wav2Vec2FrontEndConfig(arch="tiny", encoder={"num_encoder_layers": 3})
    with pytest.raises(CheckpointError, match="num_encoder_layers: model 3 != checkpoint 2"):
        load_pretrained(Wav2Vec2FrontEnd(deeper), directory)


def test_mask_embedding_loaded_when_masking(hf_checkpoints):
    config, directory = _tiny_like(hf_checkpoints, mask_prob=0.5)
    frontend = Wav2Vec2FrontEnd(config)
    load_pretrained(frontend, directory)
    _, hf_model = hf_checkpoints["group_post"]
    assert torch.equal(frontend.masker.temporal_mask_embed.detach(), hf_model.masked_spec_embed.detach())


# ------------------------------------------------------------------ safe unpickling
class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return (self.func, (self.arg,))


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("func", [os.system, eval])
def test_malicious_pickle_is_refused(tmp_path, fairseq1_checkpoints, legacy, func):
    marker = tmp_path / "pwned"
    payload = f"touch {marker}" if func is os.system else f"open({str(marker)!r}, 'w').close()"
    ckpt = safe_torch_load(fairseq1_checkpoints["cfg"][0])
    ckpt["extra_state"] = _Evil(func, payload)
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path, _use_new_zipfile_serialization=not legacy)
    for loader in (safe_torch_load, convert_checkpoint):
        with pytest.raises(CheckpointError) as err:
            loader(path)
        assert "\n" not in str(err.value) and "refusing to unpickle" in str(err.value)
        assert re.search(r"(posix|os|nt)\.system|eval", str(err.value))
    assert not marker.exists()


def test_config_objects_are_read_without_importing_them(fairseq1_checkpoints):
    # omegaconf is not installed: the cfg stubs are inert and the config still comes through
    assert "omegaconf" not in sys.modules
    ckpt = safe_torch_load(fairseq1_checkpoints["omegaconf"][0])
    assert "omegaconf" not in sys.modules
    assert type(ckpt["cfg"]).__module__ == "avsr.models.convert.common"
    assert isinstance(safe_torch_load(fairseq1_checkpoints["args"][0])["args"], argparse.Namespace)


def test_conv_layer_strings_are_parsed_without_eval():
    assert parse_conv_layers("[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512,2,2)] * 2") == (
        [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2
    )
    with pytest.raises(ValueError):
        parse_conv_layers("__import__('os').system('true')")


# ------------------------------------------------------------------ 25 Hz contract and padding
def test_output_frames_at_25_hz():
    frontend = build_wav2vec2_frontend(Wav2Vec2FrontEndConfig(arch="tiny", output_dim=24)).eval()
    assert frontend.output_dim == 24
    for n in (1, 2, 3, 10, 29):
        samples = 640 * n
        y, lens = frontend(_waveform(1, samples), torch.tensor([samples]))
        assert y.shape == (1, n, 24) and lens.dtype == torch.int64 and lens.tolist() == [n]
    cases = {MIN_SAMPLES: 1, 640 * 4 + 319: 4, 640 * 4 + 320: 5, 640 * 5 - 1: 5, 640 * 7 + 1: 7}
    for samples, expected in cases.items():
        assert frames_for_samples(samples) == expected
        y, lens = frontend(_waveform(1, samples), torch.tensor([samples]))
        assert y.shape[1] == expected and lens.tolist() == [expected]
    with pytest.raises(ValueError, match="shorter than the CNN's 400-sample receptive field"):
        frontend(_waveform(1, 399), torch.tensor([399]))


@pytest.mark.parametrize(
    "variant, options",
    [
        ("group_post", {}),
        ("group_post", {"normalize_waveform": True}),
        ("layer_pre", {}),  # LayerNorm CNN: normalize_waveform defaults to on
        ("group_post", {"weighted_layer_sum": True, "downsample_kernel_size": 3}),
        ("layer_pre", {"layer": 1, "downsample_kernel_size": 4}),
    ],
)
def test_padding_does_not_change_valid_outputs(hf_checkpoints, variant, options):
    directory, _ = hf_checkpoints[variant]
    frontend = build_wav2vec2_frontend(Wav2Vec2FrontEndConfig.from_pretrained(directory, **options)).eval()
    if frontend.layer_weights is not None:
        with torch.no_grad():
            frontend.layer_weights.copy_(torch.tensor([0.3, -0.2, 0.5]))
    lengths = [640 * 25, 640 * 12 + 100, 640 * 7, 5000, 640 * 3 - 200]
    wav = _waveform(len(lengths), max(lengths), seed=4)
    for i, n in enumerate(lengths):
        wav[i, n:] = 7.0  # garbage beyond the length must not matter
    with torch.no_grad():
        batch_out, batch_lens = frontend(wav, torch.tensor(lengths))
        assert batch_lens.tolist() == [frames_for_samples(n) for n in lengths]
        for i, n in enumerate(lengths):
            alone, alone_lens = frontend(wav[i : i + 1, :n], torch.tensor([n]))
            t = int(alone_lens[0])
            assert t == int(batch_lens[i])
            assert float((batch_out[i, :t] - alone[0]).abs().max()) < PAD_TOL
            assert not batch_out[i, t:].any()  # padded frames are zero


# ------------------------------------------------------------------ freezing, masking, layers
def test_cnn_always_frozen_transformer_frozen_until_step_n():
    frontend = build_wav2vec2_frontend(
        Wav2Vec2FrontEndConfig(arch="tiny", freeze_transformer_steps=3, mask_prob=0.2, weighted_layer_sum=True)
    ).train()
    cnn = list(frontend.encoder_frontend.feature_extractor.parameters())
    transformer = frontend.transformer_parameters()
    assert cnn and transformer and id(frontend.masker.temporal_mask_embed) in {id(p) for p in transformer}
    trainable = {id(p) for p in frontend.optimizer_parameters()}
    assert not trainable & {id(p) for p in cnn}
    assert {id(p) for p in transformer} <= trainable and id(frontend.layer_weights) in trainable

    wav, lens = _waveform(2, 640 * 8), torch.tensor([640 * 8, 640 * 6])

    def step(n: int) -> None:
        frontend.zero_grad(set_to_none=True)
        frontend.update_freezing(n)
        y, _ = frontend(wav, lens)
        y.square().mean().backward()

    for n in (0, 2):
        step(n)
        assert frontend.transformer_frozen
        assert not any(p.requires_grad for p in cnn + transformer)
        assert all(p.grad is None for p in cnn + transformer)
        assert frontend.downsample.weight.grad is not None and frontend.layer_weights.grad is not None
    for n in (3, 10):
        step(n)
        assert not frontend.transformer_frozen
        assert all(p.requires_grad for p in transformer) and not any(p.requires_grad for p in cnn)
        assert all(p.grad is None for p in cnn)
        assert frontend.encoder.layers[0].ffn.inner_proj.weight.grad is not None
        assert frontend.encoder_frontend.model_dim_proj.weight.grad is not None
    step(1)  # back below N (e.g. a schedule restarted): frozen again
    assert frontend.transformer_frozen and all(p.grad is None for p in transformer)


def test_masking_only_in_training():
    frontend = build_wav2vec2_frontend(
        Wav2Vec2FrontEndConfig(arch="tiny", mask_prob=0.5, mask_length=3, mask_channel_prob=0.3, mask_channel_length=4)
    )
    wav, lens = _waveform(2, 640 * 10), torch.tensor([640 * 10, 640 * 9])
    frontend.eval()
    with torch.no_grad():
        ref, _ = frontend.extract_features(wav, lens)
        again, _ = frontend.extract_features(wav, lens)
        frontend.train()
        torch.manual_seed(0)
        masked, _ = frontend.extract_features(wav, lens)
    assert torch.equal(ref, again)
    assert not torch.allclose(ref, masked)


def test_layer_drop_keeps_every_parameter_in_the_graph():
    frontend = build_wav2vec2_frontend(Wav2Vec2FrontEndConfig(arch="tiny", layer_drop_p=0.99)).train()
    torch.manual_seed(0)
    y, _ = frontend(_waveform(1, 640 * 5), torch.tensor([640 * 5]))
    y.sum().backward()
    assert all(p.grad is not None for p in frontend.encoder.layers.parameters())
    assert all(float(p.grad.abs().max()) == 0.0 for p in frontend.encoder.layers.parameters())


def test_config_from_dict_and_validation():
    config = Wav2Vec2FrontEndConfig.from_dict(
        {"arch": "tiny", "encoder": {"num_encoder_layers": 3, "norm_order": "pre"}, "layer": -2}
    )
    frontend = Wav2Vec2FrontEnd(config)
    assert frontend.num_layers == 3 and frontend.hidden_index == 2
    assert frontend.encoder_config.norm_order.name == "PRE"
    assert not frontend.normalize_waveform  # GroupNorm CNN: fairseq1 trained without normalisation
    lv60_like = {"feature_extractor_layer_norm_convs": True, "feature_extractor_bias": True}
    assert Wav2Vec2FrontEnd(Wav2Vec2FrontEndConfig(arch="tiny", encoder=lv60_like)).normalize_waveform
    assert not Wav2Vec2FrontEnd(
        Wav2Vec2FrontEndConfig(arch="tiny", encoder=lv60_like, normalize_waveform=False)
    ).normalize_waveform
    with pytest.raises(TypeError, match="unknown wav2vec2 front-end option"):
        Wav2Vec2FrontEndConfig.from_dict({"arch": "tiny", "bogus": 1})
    with pytest.raises(ValueError, match="unknown wav2vec 2.0 encoder option"):
        Wav2Vec2FrontEndConfig(arch="tiny", encoder={"hidden_size": 3})
    with pytest.raises(ValueError, match="strides must multiply to 320"):
        Wav2Vec2FrontEndConfig(arch="tiny", encoder={"feature_extractor_layer_descs": [[16, 10, 5], [16, 3, 2]]})
    with pytest.raises(ValueError, match="layer"):
        Wav2Vec2FrontEnd(Wav2Vec2FrontEndConfig(arch="tiny", layer=3))


def test_named_archs_mirror_fairseq2():
    from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

    hub = get_wav2vec2_model_hub()
    for name in ("base", "large", "large_lv60k"):
        assert hub.get_arch_config(name).encoder_config == WAV2VEC2_ARCHS[name](), name
