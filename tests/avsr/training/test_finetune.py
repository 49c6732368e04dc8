"""Fine-tuning a published model: ``avsr-train ... model.init=FOLDER`` on a folder converted from
auto_avsr, with another tokenizer, and the result written back in auto_avsr's layout; and on a
folder converted from AV-HuBERT (no CTC head: attention-only, or with a new CTC head)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from auto_avsr_helpers import micro_auto_avsr, random_state
from avhubert_checkpoints import TINY, published_cfg, save_checkpoint, tiny_state, train_spm
from avsr.cli import convert as convert_cli
from avsr.data.tokenizers import load_tokenizer
from avsr.models.io import load_model
from avsr.models.pretrained.auto_avsr_checkpoint import expected_checkpoint_keys
from avsr.models.vocabulary import remap_vocabulary
from repo_paths import REPO

#: a small auto_avsr VSR model (every layer auto_avsr has, narrow)
SMALL = micro_auto_avsr()


def test_remap_vocabulary_keeps_the_rows_of_shared_units() -> None:
    source, target = ["<blank>", "A", "B", "C", "<eos>"], ["<blank>", "C", "X", "A", "<eos>"]
    trained = {
        "ctc_head.weight": torch.arange(10.0).reshape(5, 2),
        "ctc_head.bias": torch.arange(5.0),
        "encoder.w": torch.ones(3),
    }
    fresh = {"ctc_head.weight": -torch.ones(5, 2), "ctc_head.bias": -torch.ones(5), "encoder.w": torch.zeros(3)}
    state, kept = remap_vocabulary(trained, source, target, fresh)
    assert kept == 4  # blank, C, A, eos
    assert state["ctc_head.bias"].tolist() == [0.0, 3.0, -1.0, 1.0, 4.0]
    assert state["ctc_head.weight"][2].tolist() == [-1.0, -1.0] and state["ctc_head.weight"][1].tolist() == [6.0, 7.0]
    assert torch.equal(state["encoder.w"], trained["encoder.w"])  # not a token layer: untouched


@pytest.fixture(scope="module")
def converted_small(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    root = tmp_path_factory.mktemp("finetune")
    shapes = expected_checkpoint_keys(SMALL, "v1.0.0")
    state = random_state(
        {k: (s, torch.int64 if k.endswith("tracked") else torch.float32) for k, s in shapes.items()}, 11
    )
    torch.save(state, root / "vsr.pth")
    assert convert_cli.main(["auto_avsr", str(root / "vsr.pth"), str(root / "auto_avsr_vsr")]) == 0
    return root / "auto_avsr_vsr", state


def finetune(recipe: str, folder: Path, train_data: dict[str, Path], out: Path, *overrides: str) -> str:
    """Two steps of ``avsr-train RECIPE model.init=FOLDER`` on the test corpus; returns the log."""
    cmd = [
        sys.executable,
        "-m",
        "avsr.cli.train",
        str(REPO / recipe),
        "--output-dir",
        str(out),
        "--no-rich",
        f"model.init={folder}",
        f"dataset.path={train_data['path']}",
        f"dataset.tokenizer={train_data['tokenizer']}",
        "dataset.max_frames_per_batch=240",
        "dataset.max_frames=240",
        "dataset.max_batch_size=4",
        "regime.num_steps=2",
        "regime.validate_every_n_steps=2",
        "regime.checkpoint_every_n_steps=2",
        "regime.publish_metrics_every_n_steps=1",
        "export.average_last_n=1",
        "common.metric_recorders.tensorboard.enabled=false",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return (out / "logs" / "rank_0.log").read_text()


def test_finetune_a_converted_auto_avsr_model_with_another_tokenizer(converted_small, train_data, tmp_path) -> None:
    """The whole user path: convert, fine-tune with a character tokenizer (not unigram5000), export,
    write back as an auto_avsr checkpoint."""
    folder, original = converted_small
    out = tmp_path / "run"
    log = finetune(
        "recipes/finetune/auto_avsr_vsr.yaml",
        folder,
        train_data,
        out,
        "lr_scheduler.config.num_warmup_steps=1",
        "finetune.freeze=[{modules: [visual_frontend], until_step: 2}]",
        "finetune.layer_decay=0.8",
    )
    tokenizer = load_tokenizer(train_data["tokenizer"])
    assert f"units carried over from {folder}" in log and f"of its {tokenizer.vocab_size} units" in log

    tuned = load_model(out / "model")
    source = load_model(folder)
    # it decodes and crops mouths as the model it came from (auto_avsr's beam 40, CTC weight 0.1, ESPnet's search)
    assert (
        tuned.metadata["decoding"]
        == source.metadata["decoding"]
        == {"beam": 40, "ctc_weight": 0.1, "semantics": "espnet"}
    )
    assert tuned.metadata["mouth_crop"] == source.metadata["mouth_crop"]
    assert tuned.metadata["init"]["source"]["format"] == "auto_avsr"
    assert tuned.config.vocab_size == tokenizer.vocab_size and tuned.config.encoder is None  # auto_avsr's architecture
    # finetune.freeze held the visual front-end for both steps: weights and BatchNorm statistics as converted
    for key, value in source.state_dict().items():
        if key.startswith("visual_frontend."):
            assert torch.equal(tuned.state_dict()[key], value), key
    assert "frozen by finetune.freeze: visual_frontend" in log
    assert (
        "Optimizer Parameter Group 7: decoder." in log and "is empty" not in log
    )  # finetune.layer_decay's groups, one per part
    # the rest started from the converted weights: two small steps away from them, not from a fresh draw
    for key in ("video_encoder.proj.weight", "video_encoder.layers.layers.0.ffn1.inner_proj.weight"):
        gap = float((tuned.state_dict()[key] - source.state_dict()[key]).abs().max())
        assert gap < 0.05 * float(source.state_dict()[key].abs().max()), key
    blank_row = tuned.state_dict()["ctc_head.weight"][0] - source.state_dict()["ctc_head.weight"][0]
    assert float(blank_row.abs().max()) < 0.05  # the blank's row carried over

    back = tmp_path / "finetuned.pth"
    assert convert_cli.main(["--to", "auto_avsr", str(out / "model"), str(back)]) == 0
    state = torch.load(back, weights_only=True)
    assert state.keys() == original.keys()
    assert state["ctc.ctc_lo.weight"].shape == (tokenizer.vocab_size, 32)


def test_layer_decay_and_pretrained_scale_give_every_part_its_rate() -> None:
    from avsr.models.avsr_model import AVSRModel
    from avsr.training.finetune import FinetuneSection, parameter_groups, rates_by_name

    config = SMALL.avsr_config()
    names = [n for n, _ in AVSRModel(config).named_parameters()]
    assert parameter_groups(config, FinetuneSection(), 1.0) == []  # nothing asked: fairseq2's single group
    groups = parameter_groups(config, FinetuneSection(layer_decay=0.5, pretrained_lr_scale=0.1), 1.0, names)
    rates = rates_by_name(groups, names, lr=99.0)
    assert all(any(re.match(str(g["params"]), n) for n in names) for g in groups)  # no empty group
    assert 99.0 not in rates.values()  # every parameter is in a group
    # levels: front-end 0, projection 1, layer 0 at 2, final norm 3, fusion 4, top (decoder, CTC) 5
    assert rates["visual_frontend.stem.conv.weight"] == pytest.approx(0.1 * 0.5**5)
    assert rates["video_encoder.layers.layers.0.ffn1.inner_proj.weight"] == pytest.approx(0.1 * 0.5**3)
    assert rates["decoder.layers.layers.0.ffn.inner_proj.weight"] == pytest.approx(0.1)
    for fresh in ("ctc_head.weight", "decoder.frontend.embed.weight", "decoder.final_proj.weight"):
        assert rates[fresh] == 1.0, fresh
    # under DDP the names carry a module. prefix
    assert rates_by_name(groups, ["module.ctc_head.weight"], lr=99.0)["module.ctc_head.weight"] == 1.0


def test_bad_finetune_settings_exit_2_with_one_line(converted_small, train_data, tmp_path, capsys) -> None:
    from avsr.cli import train as train_cli

    folder, _ = converted_small
    base = [
        str(REPO / "recipes/finetune/auto_avsr_vsr.yaml"),
        "--output-dir",
        str(tmp_path / "x"),
        f"model.init={folder}",
        f"dataset.path={train_data['path']}",
        f"dataset.tokenizer={train_data['tokenizer']}",
    ]
    for override, message in (
        ("finetune.layer_decay=1.5", "finetune.layer_decay: must be in (0, 1]"),
        ("finetune.freeze=[{modules: [lips], until_step: 3}]", "finetune.freeze: 'lips' is not one of"),
        (
            "finetune.freeze=[{modules: [audio_frontend], until_step: 3}]",
            "finetune.freeze: this model has no audio_frontend",
        ),
        (f"model.init={tmp_path / 'nowhere'}", "model.init:"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            train_cli.main([*base, override])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and message in err, (override, err)


@pytest.fixture(scope="module")
def converted_avhubert(tmp_path_factory) -> Path:
    """A tiny AV-HuBERT checkpoint fine-tuned for lip reading (modalities [video]), converted."""
    root = tmp_path_factory.mktemp("avhubert_finetune")
    checkpoint = save_checkpoint(root / "tiny.pt", tiny_state(), published_cfg(TINY, ["video"]), train_spm(root))
    assert convert_cli.main(["avhubert", str(checkpoint), str(root / "avhubert")]) == 0
    return root / "avhubert"


def test_finetune_a_converted_avhubert_model_attention_only(converted_avhubert, train_data, tmp_path) -> None:
    """AV-HuBERT's recipe: attention-only with the encoder side frozen; validation decodes with the
    attention decoder (there is no CTC head); the export decodes as the source (beam 50, its crops)."""
    out = tmp_path / "run"
    log = finetune("recipes/finetune/avhubert.yaml", converted_avhubert, train_data, out)
    tokenizer = load_tokenizer(train_data["tokenizer"])
    assert f"units carried over from {converted_avhubert}" in log
    assert re.search(
        r"Validation Metrics \(step 2\) - .*CTC Loss: 0 \|.*Word Error Rate \(WER\): [\d.]+", log
    )  # attention decoding
    tuned, source = load_model(out / "model"), load_model(converted_avhubert)
    assert (
        not tuned.has_ctc and tuned.decodable_modalities == ("v",) and tuned.config.vocab_size == tokenizer.vocab_size
    )
    assert (
        tuned.metadata["decoding"] == source.metadata["decoding"]
        and tuned.metadata["mouth_crop"]["style"] == "avhubert"
    )
    assert tuned.metadata["licence"] == source.metadata["licence"]
    before, after = source.state_dict(), tuned.state_dict()
    for key in (
        "encoder.layers.layers.0.ffn.inner_proj.weight",
        "visual_frontend.stem.conv.weight",
        "video_encoder.proj.weight",
    ):
        assert torch.equal(after[key], before[key]), key  # frozen for the first 80% of the steps
    assert not torch.equal(
        after["decoder.layers.layers.0.ffn.inner_proj.weight"], before["decoder.layers.layers.0.ffn.inner_proj.weight"]
    )


def test_finetune_an_avhubert_model_with_a_new_ctc_head(converted_avhubert, train_data, tmp_path) -> None:
    out = tmp_path / "run"
    log = finetune(
        "recipes/finetune/avhubert.yaml",
        converted_avhubert,
        train_data,
        out,
        "model.config.ctc_head=true",
        "model.config.loss.ctc_weight=0.3",
        "finetune.freeze=[]",
    )
    assert re.search(r"new, at initialisation: ctc_head\.bias, ctc_head\.weight", log), log[-2000:]
    tuned = load_model(out / "model")
    assert tuned.has_ctc and tuned.config.loss.ctc_weight == 0.3
