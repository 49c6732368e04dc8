"""AV-HuBERT's fine-tuned seq2seq checkpoints in our toolkit (``avsr.models.pretrained.avhubert``).

The key/shape tables ``tests/data/avhubert_{base,large}_keys.tsv`` were listed from AV-HuBERT's
own modules (av_hubert 258fb50 with fairseq afc77bd) built with the published configs. Full-size
checks run on the meta device; the converted checkpoints are a scaled-down variant with the same
names (shapes follow ``AVHubertConfig.tiny``), in fairseq1's file layout: ``cfg`` with the
fine-tuning and (``w2v_args``) pre-training options, and a ``task_state`` that pickles fairseq's
``Dictionary``, its ``SentencepieceBPE`` and a real ``sentencepiece.SentencePieceProcessor``.
Parity with AV-HuBERT's own code: ``tests/data/avhubert_parity.json`` (tiny, see
``avhubert_helpers``) and, opt-in with ``AVSR_AV_HUBERT_SRC`` (and ``AVSR_FAIRSEQ_SRC``,
``AVSR_AV_HUBERT_PYTHON``), the published Base and Large sizes against a run of its code.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from avhubert_checkpoints import SPECIALS, TINY, published_cfg, read_table, save_checkpoint, tiny_state, train_spm
from avhubert_helpers import LENGTHS, PARITY_FILE, PREV_TOKENS, SIZES, VOCAB, reference_inputs, reference_state
from avsr.cli import decode as decode_cli
from avsr.data.tokenizers import load_tokenizer
from avsr.decoding.beam_search import BeamSearchConfig, beam_search
from avsr.decoding.model_decoder import ModelStepDecoder
from avsr.decoding.recognizer import DecodeOptions, Preprocessing, Recognizer, RecognizerError
from avsr.face import MouthCropConfig
from avsr.models.avsr_model import AVSRModel
from avsr.models.convert.common import CheckpointError
from avsr.models.io import load_model, read_model_yaml
from avsr.models.pretrained.avhubert import (
    DROPPED,
    LICENCE,
    config_from_checkpoint,
    convert_checkpoint,
    fairseq_order,
    map_state_dict,
    our_key,
)
from avsr.models.pretrained.avhubert_config import AVHubertConfig
from avsr.models.stacked_fbank import avhubert_audio_features, log_filterbank
from repo_paths import REPO


# ---------------------------------------------------------------------- the published architecture
@pytest.mark.parametrize("size", ["base", "large"])
def test_published_keys_and_shapes_map_onto_our_model(size: str) -> None:
    table = read_table(size)
    config = getattr(AVHubertConfig, size)(1000)
    state = {k: torch.empty(shape, device="meta") for k, shape in table.items()}
    assert config_from_checkpoint(published_cfg(config, ["video"]), state, "x.pt") == getattr(AVHubertConfig, size)(
        1000, modalities=("video",)
    )
    with torch.device("meta"):
        ours = AVSRModel(config.avsr_config(), pretrained=False).state_dict()
    mapped = {}
    for key, shape in table.items():
        name = our_key(key)
        if name is None:
            assert any(re.search(p, key) for p in DROPPED)
            continue
        assert name in ours, key
        assert tuple(ours[name].shape) == shape, (key, shape, tuple(ours[name].shape))
        mapped[name] = key
    assert set(mapped) == set(ours)  # every weight of ours comes from exactly one key
    assert len(table) - len(mapped) == 2  # mask_emb and the positions' dtype buffer
    params = sum(
        int(np.prod(s)) for k, s in table.items() if "running" not in k and "num_batches" not in k and "_float" not in k
    )
    assert params - 104 == sum(v.numel() for k, v in ours.items() if "running" not in k and "num_batches" not in k)


# ---------------------------------------------------------------------- parity with AV-HuBERT's own code
def reference_model(config: AVHubertConfig, table: str = "base") -> AVSRModel:
    """Our model with ``reference_state``'s weights under AV-HuBERT's names (the published key
    table, trimmed to ``config``'s layers; shapes ours), mapped by the converter."""
    model = AVSRModel(config.avsr_config(), pretrained=False).eval()
    own = model.state_dict()
    shapes = {}
    for key in read_table(table):
        layer = re.search(r"\blayers\.(\d+)\.", key)
        layers = config.decoder_layers if key.startswith("decoder.") else config.encoder_layers
        name = our_key(key)
        if name is not None and not (layer and int(layer.group(1)) >= layers):
            shapes[key] = tuple(own[name].shape)
    mapped, _ = map_state_dict(reference_state(shapes), own, "reference")
    model.load_state_dict(mapped)
    return model


@torch.no_grad()
def our_outputs(
    model: AVSRModel, waves: list[np.ndarray], videos: list[np.ndarray], prev_tokens: list[list[int]]
) -> dict:
    """The parity file's entries computed by our model from the raw int16 waves and uint8 crops
    (our own preprocessing: float waveform, log filterbank, stacking, centre crop, normalisation)."""
    recognizer = Recognizer(model, None, Preprocessing(), torch.device("cpu"))
    audio, audio_lens = recognizer._audio_tensor([w.astype(np.float32) / 32768 for w in waves])
    video, video_lens = recognizer._video_tensor(videos)
    ours_of_fairseq = torch.argsort(torch.tensor(fairseq_order(model.config.vocab_size)))
    lengths = [len(v) for v in videos]
    feats, _ = model.audio_frontend(audio, audio_lens)
    out = {"audio_features": [feats[i, :n] for i, n in enumerate(lengths)]}
    for name, (a, v) in {"av": (audio, video), "a": (audio, None), "v": (None, video)}.items():
        enc, lens = model.encode(a, audio_lens, v, video_lens)
        out[f"encoder_{name}"] = [enc[i, :n] for i, n in enumerate(lengths)]
        out[f"logits_{name}"] = model.decode(ours_of_fairseq[torch.tensor(prev_tokens)], enc, lens)[
            :, :, ours_of_fairseq
        ]
    return out


def max_differences(ours: dict, reference: dict) -> dict[str, float]:
    """max |ours - reference| per entry of a parity file."""

    def diff(a, b) -> float:
        if isinstance(a, list):
            return max(diff(x, y) for x, y in zip(a, b))
        return float((a - torch.tensor(b, dtype=a.dtype)).abs().max())

    assert set(ours) <= set(reference)
    return {k: diff(ours[k], reference[k]) for k in ours}


#: parity tolerances: values of order one after float32 arithmetic in a different order
TOLERANCE = {"audio_features": 1e-5, "encoder": 3e-5, "logits": 1e-4}


def tolerance(entry: str) -> float:
    return TOLERANCE[entry.split("_")[0] if not entry.startswith("audio") else "audio_features"]


def test_outputs_match_avhubert_own_code() -> None:
    """tests/data/avhubert_parity.json holds what AV-HuBERT's own modules and dataset code computed
    (scripts/reference/make_avhubert_parity.py) from the same raw inputs and weights; with these
    weights both the audio and the video move the audio-visual output (checked here), so a fault
    in either branch or in the fusion shows."""
    ref = json.loads(PARITY_FILE.read_text())
    assert (
        ref["size"] == "tiny"
        and ref["sizes"] == SIZES["tiny"]
        and ref["lengths"] == LENGTHS
        and ref["prev_tokens"] == PREV_TOKENS
    )
    config = AVHubertConfig.tiny(vocab_size=VOCAB["tiny"], resnet_width=1.0)  # AV-HuBERT's fixed ResNet
    model = reference_model(config)
    waves, videos = reference_inputs(LENGTHS)
    ours = our_outputs(model, waves, videos, PREV_TOKENS)
    diffs = max_differences(ours, ref)
    assert all(diffs[k] <= tolerance(k) for k in diffs), diffs
    # Either modality alone changes the audio-visual encoder output far beyond the tolerance.
    other_waves, other_videos = reference_inputs(LENGTHS, seed=8)
    for name, (w, v) in {"audio": (other_waves, videos), "video": (waves, other_videos)}.items():
        moved = our_outputs(model, w, v, PREV_TOKENS)["encoder_av"]
        change = min(float((a - b).abs().max()) for a, b in zip(moved, ours["encoder_av"]))
        assert change > 100 * TOLERANCE["encoder"], f"replacing the {name} moves the AV encoder output by only {change}"


AV_HUBERT_SRC = os.environ.get("AVSR_AV_HUBERT_SRC")
AV_HUBERT_PYTHON = os.environ.get("AVSR_AV_HUBERT_PYTHON", sys.executable)
FAIRSEQ_SRC = os.environ.get("AVSR_FAIRSEQ_SRC")
MAKE_PARITY = REPO / "scripts" / "reference" / "make_avhubert_parity.py"


@pytest.mark.slow
@pytest.mark.skipif(
    not AV_HUBERT_SRC,
    reason="opt-in: set AVSR_AV_HUBERT_SRC to a checkout of facebookresearch/av_hubert (258fb50), "
    "AVSR_FAIRSEQ_SRC to fairseq afc77bd (default: its submodule) and AVSR_AV_HUBERT_PYTHON to a Python that "
    "imports that fairseq (see scripts/reference/make_avhubert_parity.py)",
)
@pytest.mark.parametrize("size", ["base", "large"])
def test_full_size_models_match_avhubert_own_code(size: str, tmp_path) -> None:
    """The published sizes, random weights: AV-HuBERT's own model and dataset code (run by the
    reference script in AV-HuBERT's Python) and ours agree on the audio features, the encoder
    output and the decoder logits over the whole vocabulary, for av, a and v input."""
    import subprocess

    out = tmp_path / f"{size}.json"
    command = [AV_HUBERT_PYTHON, str(MAKE_PARITY), "--av-hubert-src", AV_HUBERT_SRC, "--size", size, "--out", str(out)]
    run = subprocess.run(
        command + (["--fairseq-src", FAIRSEQ_SRC] if FAIRSEQ_SRC else []), capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ref = json.loads(out.read_text())
    model = reference_model(getattr(AVHubertConfig, size)(VOCAB[size]), size)
    waves, videos = reference_inputs(ref["lengths"])
    diffs = max_differences(our_outputs(model, waves, videos, ref["prev_tokens"]), ref)
    print(f"AV-HuBERT {size}, max |ours - theirs|: {diffs}")
    assert all(diffs[k] <= 10 * tolerance(k) for k in diffs), diffs  # 12 to 24 layers instead of 2


# ---------------------------------------------------------------------- audio features
def reference_logfbank(wave: np.ndarray) -> np.ndarray:
    """python_speech_features.logfbank(wave, 16000) written out from its definitions (loops)."""
    x = wave.astype(np.float64)
    y = np.append(x[0], x[1:] - 0.97 * x[:-1])
    n = 1 if len(y) <= 400 else 1 + int(np.ceil((len(y) - 400) / 160))
    y = np.concatenate([y, np.zeros((n - 1) * 160 + 400 - len(y))])
    mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)  # noqa: E731
    points = np.linspace(mel(0), mel(8000), 28)
    bins = np.floor(513 * (700 * (10 ** (points / 2595.0) - 1)) / 16000)
    out = np.zeros((n, 26))
    for t in range(n):
        power = np.abs(np.fft.rfft(y[t * 160 : t * 160 + 400], 512)) ** 2 / 512
        for j in range(26):
            e = sum(power[i] * (i - bins[j]) / (bins[j + 1] - bins[j]) for i in range(int(bins[j]), int(bins[j + 1])))
            e += sum(
                power[i] * (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
                for i in range(int(bins[j + 1]), int(bins[j + 2]))
            )
            out[t, j] = np.log(e if e != 0 else np.finfo(float).eps)
    return out.astype(np.float32)


def test_log_filterbank_matches_the_formulas_and_is_batch_invariant() -> None:
    rng = np.random.default_rng(0)
    waves = [(rng.standard_normal(n) * 2000).astype(np.int16) for n in (3200, 401, 400, 2300)]
    waves[2][:] = 0  # digital silence: energies floored at eps before the log
    batch = torch.zeros(len(waves), 3200)
    for i, w in enumerate(waves):
        batch[i, : len(w)] = torch.from_numpy(w.astype(np.float32) / 32768)
    lengths = torch.tensor([len(w) for w in waves])
    feats, frames = log_filterbank(batch, lengths)
    for i, w in enumerate(waves):
        ref = reference_logfbank(w)
        assert int(frames[i]) == len(ref)
        np.testing.assert_allclose(feats[i, : len(ref)].numpy(), ref, rtol=1e-5, atol=1e-4)
        assert not feats[i, len(ref) :].any()
    # stacking (zero frames to a multiple of 4) and the per-frame normalisation of hubert_dataset.py
    stacked, lens = avhubert_audio_features(batch, lengths)
    ref = reference_logfbank(waves[0])
    ref = np.concatenate([ref, np.zeros((-len(ref) % 4, 26), np.float32)]).reshape(-1, 104)
    ref = (ref - ref.mean(1, keepdims=True)) / np.sqrt(ref.var(1, keepdims=True) + 1e-5)
    assert lens.tolist() == [5, 1, 1, 4] and stacked.shape == (4, 5, 104)
    np.testing.assert_allclose(stacked[0].numpy(), ref, atol=1e-4)


# ---------------------------------------------------------------------- a converted tiny checkpoint
@pytest.fixture(scope="module")
def spm_model(tmp_path_factory) -> Path:
    return train_spm(tmp_path_factory.mktemp("spm"))


@pytest.fixture(scope="module")
def converted(spm_model, tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    root = tmp_path_factory.mktemp("avhubert")
    state = tiny_state()
    ckpt = save_checkpoint(root / "tiny.pt", state, published_cfg(TINY), spm_model)
    return convert_checkpoint(ckpt, root / "model"), state


def test_every_key_lands_and_the_folder_records_what_decoding_needs(converted, spm_model, capsys) -> None:
    out, state = converted
    model = load_model(out)
    ours = model.state_dict()
    order = torch.tensor(fairseq_order(TINY.vocab_size))
    for key, tensor in state.items():
        name = our_key(key)
        if name is None:
            continue
        expected = tensor[order] if key == "decoder.embed_tokens.weight" else tensor
        assert torch.equal(ours[name], expected.to(ours[name].dtype)), key
    meta = read_model_yaml(out)
    assert meta["family"] == "avsr" and meta["config"] == TINY.avsr_config().to_dict()
    assert meta["extra"]["licence"] == LICENCE and "non-commercial" in LICENCE
    assert "/" not in meta["extra"]["source"]["checkpoint"]  # the file's name, not this machine's path
    assert meta["extra"]["preprocessing"] == {"crop_size": 88, "video_mean": 0.421, "video_std": 0.165}
    assert sorted(meta["extra"]["source"]["dropped_keys"]) == [
        "decoder.embed_positions._float_tensor",
        "encoder.w2v_model.mask_emb",
    ]
    # decoding applies AV-HuBERT's own mouth alignment and its length-normalised scores
    recognizer = Recognizer.load(out)
    assert meta["extra"]["mouth_crop"]["style"] == "avhubert"
    assert recognizer.mouth_crop == MouthCropConfig.for_style("avhubert") and recognizer.length_normalisation == 1.0
    # ids: each of our ids names the same piece in the tokenizer as the fairseq row it took
    tokenizer = load_tokenizer(out / "tokenizer")
    fairseq_symbols = [*SPECIALS, *[p for p in tokenizer.units if p not in ("<s>", "<unk>")]]
    assert tokenizer.vocab_size == TINY.vocab_size == len(fairseq_symbols)
    assert tokenizer.fingerprint == meta["extra"]["tokenizer_fingerprint"]
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    ids = tokenizer.encode("The cat SAT")
    assert [int(order[i]) for i in ids] == processor.encode("the cat sat")  # lower-cased; spm ids = fairseq ids
    assert tokenizer.decode(ids) == "the cat sat"
    assert tokenizer.id_to_piece(tokenizer.eos_id) == "<sos/eos>" and int(order[tokenizer.eos_id]) == 2


#: today's names -> the names of folders converted before the one model (AVHubertModel's)
LEGACY_NAMES = [
    (r"^audio_encoder\.proj\.", "audio_proj."),
    (r"^video_encoder\.proj\.", "video_proj."),
    (r"^visual_frontend\.", "video_frontend."),
    (r"^encoder\.input_norm\.", "encoder_frontend.post_extract_layer_norm."),
    (r"^encoder\.proj\.", "encoder_frontend.model_dim_proj."),
    (r"^encoder\.pos_encoder\.", "encoder_frontend.pos_encoder."),
    (r"^encoder\.layers\.layers\.(\d+)\.", r"encoder.layers.\1."),
    (r"^encoder\.layers\.layer_norm\.", "encoder.layer_norm."),
]


@torch.no_grad()
def test_folders_converted_before_the_one_model_still_load(converted, tmp_path) -> None:
    """A folder written when AV-HuBERT had its own model class (family avhubert, its config with
    ResNet channels, its parameter names) loads into the one model and computes the same."""
    from safetensors.torch import load_file, save_file

    from avsr.models.io import file_sha256

    source = converted[0]
    old = tmp_path / "old"
    old.mkdir()
    legacy = {}
    for key, value in load_file(source / "model.safetensors").items():
        for pattern, replacement in LEGACY_NAMES:
            if re.search(pattern, key):
                key = re.sub(pattern, replacement, key, count=1)
                break
        legacy[key] = value
    assert "encoder.layers.0.ffn.inner_proj.weight" in legacy and "video_frontend.stem.act.weight" in legacy
    save_file(legacy, old / "model.safetensors")
    meta = read_model_yaml(source)
    config = {k: v for k, v in TINY.to_dict().items() if k not in ("resnet_width", "dropout", "decoder_dropout")}
    meta.update(
        family="avhubert",
        config={**config, "resnet_channels": [8, 8, 16, 32, 64]},
        weights={"file": "model.safetensors", "sha256": file_sha256(old / "model.safetensors")},
    )
    (old / "model.yaml").write_text(yaml.safe_dump(meta))
    loaded, new = load_model(old), load_model(source)
    g = torch.Generator().manual_seed(5)
    audio, video = torch.randn(2, 6 * 640, generator=g) * 0.1, torch.randn(2, 6, 88, 88, generator=g)
    for a, v in ((audio, video), (audio, None), (None, video)):
        want, lens = new.encode(a, None, v, None)
        torch.testing.assert_close(loaded.encode(a, None, v, None)[0], want, atol=0, rtol=0)
        tokens = torch.tensor([[TINY.vocab_size - 1, 4, 7]] * 2)
        torch.testing.assert_close(loaded.decode(tokens, want, lens), new.decode(tokens, want, lens), atol=0, rtol=0)


def test_converter_refuses_what_does_not_fit(spm_model, tmp_path) -> None:
    cfg = published_cfg(TINY)
    cases = {
        "unknown": (
            {**tiny_state(), "encoder.w2v_model.extra.weight": torch.zeros(2)},
            cfg,
            "not known to the AV-HuBERT converter: encoder.w2v_model.extra.weight",
        ),
        "missing": (
            {k: v for k, v in tiny_state().items() if "fc2" not in k or "decoder.layers.1" not in k},
            cfg,
            "not in the checkpoint: decoder.layers.layers.1.ffn.output_proj",
        ),
        "shape": (
            {**tiny_state(), "encoder.w2v_model.post_extract_proj.bias": torch.zeros(5)},
            cfg,
            "shape mismatch(es): encoder.w2v_model.post_extract_proj.bias (5,) vs (32,)",
        ),
        "pretrained": (tiny_state(), {**cfg, "model": {**cfg["model"], "_name": "av_hubert"}}, "a pre-trained model"),
    }
    for name, (state, c, message) in cases.items():
        ckpt = save_checkpoint(tmp_path / f"{name}.pt", state, c, spm_model)
        with pytest.raises(CheckpointError) as exc:
            convert_checkpoint(ckpt, tmp_path / name)
        assert str(exc.value).startswith(str(ckpt)) and message in str(exc.value) and "\n" not in str(exc.value), name
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError) as exc:
        convert_checkpoint(text, tmp_path / "text")
    assert "not a pickle of tensors" in str(exc.value) and "weights_only" not in str(exc.value)
    bare = save_checkpoint(tmp_path / "bare.pt", tiny_state(), cfg, None)
    with pytest.raises(CheckpointError, match="carries no sentencepiece model: pass --tokenizer"):
        convert_checkpoint(bare, tmp_path / "bare")
    other = tmp_path / "other"
    other.mkdir()
    import sentencepiece

    (other / "t.txt").write_text("\n".join(["completely different words here"] * 50))
    sentencepiece.SentencePieceTrainer.Train(
        f"--input={other / 't.txt'} --model_prefix={other / 'spm'} --vocab_size=30 --hard_vocab_limit=false "
        "--bos_id=0 --pad_id=1 --eos_id=2 --unk_id=3 --minloglevel=2"
    )
    with pytest.raises(CheckpointError, match="not the tokenizer this model was fine-tuned with"):
        convert_checkpoint(bare, tmp_path / "bare", tokenizer=other / "spm.model")
    # the sentencepiece model and fairseq's dict.wrd.txt in a folder, given with --tokenizer
    folder = tmp_path / "spm1000"
    folder.mkdir()
    (folder / "spm_unigram.model").write_bytes(spm_model.read_bytes())
    processor = sentencepiece.SentencePieceProcessor(model_file=str(spm_model))
    (folder / "dict.wrd.txt").write_text(
        "".join(f"{processor.id_to_piece(i)} 1\n" for i in range(4, processor.get_piece_size()))
    )
    assert (convert_checkpoint(bare, tmp_path / "bare", tokenizer=folder) / "model.yaml").is_file()


def test_encoder_is_batch_invariant_and_incremental_decoding_matches_full(converted) -> None:
    model = load_model(converted[0])
    g = torch.Generator().manual_seed(3)
    audio, video = torch.randn(2, 640 * 12, generator=g) * 0.1, torch.randn(2, 12, 88, 88, generator=g)
    a_lens, v_lens = torch.tensor([640 * 12, 640 * 7]), torch.tensor([12, 7])
    with torch.no_grad():
        for a, v in ((audio, video), (audio, None), (None, video)):
            enc, lens = model.encode(a, a_lens if a is not None else None, v, v_lens if v is not None else None)
            assert lens.tolist() == [12, 7] and not enc[1, 7:].any()
            alone, _ = model.encode(
                None if a is None else a[1:, : 640 * 7], a_lens[1:], None if v is None else v[1:, :7], v_lens[1:]
            )
            torch.testing.assert_close(enc[1:, :7], alone, atol=2e-5, rtol=1e-4)
        tokens = torch.tensor([[model.eos_id, 5, 9, 4, 11]] * 2)
        full = model.decode(tokens, enc, lens)
        bag = model.new_state_bag(8)
        steps = [model.decode(tokens[:, i : i + 1], enc, lens, bag) for i in range(tokens.size(1))]
        torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_attention_only_beam_search_without_ctc(converted) -> None:
    model = load_model(converted[0])
    g = torch.Generator().manual_seed(4)
    video, lens = torch.randn(3, 10, 88, 88, generator=g), torch.tensor([10, 6, 8])
    with torch.no_grad():
        enc, lens = model.encode(None, None, video, lens)
        config = BeamSearchConfig(beam=1, ctc_weight=0.5)  # the weight is moot without CTC scores
        best = beam_search(None, lens, ModelStepDecoder(model, enc, lens, 12), config, model.blank_id, model.eos_id)
        for i in range(3):  # beam 1 = greedy decoding of the attention decoder alone
            tokens = [model.eos_id]
            while len(tokens) <= int(lens[i]):
                logits = model.decode(torch.tensor([tokens]), enc[i : i + 1, : int(lens[i])], lens[i : i + 1])[0, -1]
                logits[model.blank_id] = float("-inf")
                tokens.append(int(logits.argmax()))
                if tokens[-1] == model.eos_id:
                    break
            want = [t for t in tokens[1:] if t != model.eos_id]
            assert best[i][0].tokens == want and best[i][0].ctc_score == 0.0
        beams = beam_search(
            None, lens, ModelStepDecoder(model, enc, lens, 12), BeamSearchConfig(beam=4), 0, model.eos_id
        )
        alone = beam_search(
            None,
            lens[1:2],
            ModelStepDecoder(model, enc[1:2, :6], lens[1:2], 12),
            BeamSearchConfig(beam=4),
            0,
            model.eos_id,
        )
        assert [h.tokens for h in beams[1]] == [h.tokens for h in alone[0]]
    with pytest.raises(ValueError, match="attention decoder is needed"):
        beam_search(None, lens, None, BeamSearchConfig(beam=2), 0, model.eos_id)
    recognizer = Recognizer.load(converted[0])
    assert not recognizer.has_ctc and recognizer.modalities == ("a", "v", "av")
    crops = [np.random.default_rng(0).integers(0, 255, (9, 96, 96), dtype=np.uint8)]
    out = recognizer.transcribe(None, crops, DecodeOptions(decoder="beam", beam=3), timings=True)
    assert out[0].words == [] and out[0].text == recognizer.tokenizer.decode(out[0].tokens)
    with pytest.raises(RecognizerError, match="no CTC head"):
        recognizer.transcribe(None, crops, DecodeOptions(decoder="greedy"))


# ---------------------------------------------------------------------- avsr-decode (conftest's face_video)
def test_avsr_decode_runs_a_converted_checkpoint(converted, face_video, tmp_path, capsys) -> None:
    model = str(converted[0])
    srt = tmp_path / "face.srt"
    assert (
        decode_cli.main(
            [
                "--model",
                model,
                "--quiet",
                "--beam",
                "3",
                "--max-length",
                "5",
                "--json",
                "--srt",
                str(srt),
                str(face_video),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        captured.err.count("warning:") == 1 and "no CTC head" in captured.err and "one cue per segment" in captured.err
    )
    result = json.loads(captured.out)["files"][0]
    assert result["modality"] == "av" and result["notes"] == [] and len(result["segments"]) == 1
    segment = result["segments"][0]
    assert segment["words"] == [] and segment["start"] == 0.0 and segment["end"] == pytest.approx(1.6)
    cue = srt.read_text().splitlines()
    assert cue[:2] == ["1", "00:00:00,000 --> 00:00:01,600"] if segment["text"] else cue == []
    with pytest.raises(SystemExit) as exc:
        decode_cli.main(["--model", model, "--quiet", "--decoder", "greedy", str(face_video)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "no CTC head" in err and "--decoder beam" in err
    with pytest.raises(SystemExit) as exc:
        decode_cli.main(["--model", model, "--quiet", "--length-norm", "-1", str(face_video)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "length_normalisation must be at least 0" in err


def test_avsr_decode_refuses_unusable_crop_settings_in_one_line(converted, face_video, tmp_path, capsys) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(converted[0], model)
    meta = yaml.safe_load((model / "model.yaml").read_text())
    meta["extra"]["mouth_crop"]["fit"] = "ransac"
    (model / "model.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(SystemExit) as exc:
        decode_cli.main(["--model", str(model), "--quiet", str(face_video)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert (
        "mouth_crop settings are not usable (fit must be one of lmeds, least_squares" in err and "avsr-convert" in err
    )


def test_avsr_convert_command(converted, spm_model, tmp_path, capsys) -> None:
    from avsr.cli import convert as convert_cli

    ckpt = save_checkpoint(
        tmp_path / "bare.pt", converted[1], yaml.safe_load(yaml.safe_dump(published_cfg(TINY, ["video"]))), None
    )
    assert convert_cli.main(["avhubert", str(ckpt), str(tmp_path / "out"), "--tokenizer", str(spm_model)]) == 0
    err = capsys.readouterr().err
    assert "non-commercial" in err and "avsr-decode --model" in err
    assert Recognizer.load(tmp_path / "out").modalities == ("v",)
