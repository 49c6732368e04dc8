"""avsr-train task: lm — a token language model on transcripts and text files, exported as a model
folder of family lm that avsr-decode and avsr-bench fuse into the beam search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avsr.cli import bench as bench_cli
from avsr.cli import decode as decode_cli
from avsr.cli import train as train_cli
from avsr.data.tokenizers import load_tokenizer
from avsr.models.io import load_model, read_model_yaml
from avsr.models.lm import TokenLM
from repo_paths import REPO

SMALL = [
    "dataset.batch_size=4",
    "model.config={model_dim: 16, layers: 1, heads: 2, ffn_dim: 32}",
    "regime.num_steps=40",
    "regime.validate_every_n_steps=20",
    "regime.checkpoint_every_n_steps=20",
    "regime.publish_metrics_every_n_steps=10",
    "lr_scheduler.config.num_warmup_steps=5",
    "optimizer.config.lr=0.01",
    "--no-rich",
]


def _train(out: Path, data: dict[str, Path], *extra: str) -> int:
    recipe = str(REPO / "recipes" / "lm" / "synth.yaml")
    args = [recipe, f"dataset.path={data['path']}", f"dataset.tokenizer={data['tokenizer']}", *SMALL, *extra]
    try:
        return train_cli.main([*args, "--output-dir", str(out)])
    except SystemExit as exc:  # a one-line error
        return int(exc.code)


@pytest.fixture(scope="module")
def lm_run(train_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lm") / "run"
    extra = tmp_path_factory.mktemp("text") / "more.txt"
    extra.write_text("SET BLUE AT A ONE NOW\n\nPLACE RED BY B TWO AGAIN\n")
    assert _train(out, train_data, f"dataset.text_files=[{extra}]") == 0
    return out


def test_the_lm_learns_the_transcripts_and_exports_a_folder_of_family_lm(lm_run: Path, train_data) -> None:
    valid = [json.loads(line) for line in (lm_run / "metrics" / "valid.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (lm_run / "metrics" / "train.jsonl").read_text().splitlines()]
    assert train[-1]["NLL Loss"] < train[0]["NLL Loss"] - 0.3  # it learns
    assert valid[-1]["Perplexity (per token)"] < load_tokenizer(train_data["tokenizer"]).vocab_size
    meta = read_model_yaml(lm_run / "model")
    assert meta["family"] == "lm" and meta["extra"]["step"] == 40
    assert meta["extra"]["tokenizer_fingerprint"] == load_tokenizer(train_data["tokenizer"]).fingerprint
    assert isinstance(load_model(lm_run / "model"), TokenLM)


def test_decoding_with_the_lm_at_weight_zero_is_decoding_without_it(lm_run, micro_model_dir, lrs2_corpus, capsys):
    clip = str(sorted(lrs2_corpus.glob("main/*/*.mp4"))[0])
    runs = []
    for extra in ([], ["--lm", str(lm_run / "model"), "--lm-weight", "0"]):
        assert decode_cli.main(["--model", str(micro_model_dir), "--quiet", "--json", clip, *extra]) == 0
        runs.append(json.loads(capsys.readouterr().out)["files"])
    assert runs[0] == runs[1]
    assert decode_cli.main(["--model", str(micro_model_dir), "--quiet", clip, "--lm", str(lm_run / "model")]) == 0


def test_bench_records_the_lm_it_fused(lm_run, micro_model_dir, train_data, tmp_path) -> None:
    args = ["--model", str(micro_model_dir), "--manifest", str(train_data["path"] / "test.tsv"), "--modalities", "a"]
    args += ["--snr", "clean", "--limit", "2", "--quiet", "--out", str(tmp_path / "bench")]
    assert bench_cli.main([*args, "--lm", str(lm_run / "model"), "--lm-weight", "0.5"]) == 0
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert results["lm"] == str(lm_run / "model") and results["lm_weight"] == 0.5


def test_an_lm_of_another_tokenizer_is_refused_in_one_line(lm_run, micro_model_dir, lrs2_corpus, tmp_path, capsys):
    from avsr.data.tokenizers.char import CharTokenizer
    from avsr.models.io import save_model

    other = tmp_path / "other_lm"
    tokenizer = CharTokenizer.build(["ÉTÉ"])  # one more unit: its ids mean other units
    tokenizer.save(other / "tokenizer")
    save_model(other, load_model(lm_run / "model"), extra={"tokenizer_fingerprint": tokenizer.fingerprint})
    clip = str(sorted(lrs2_corpus.glob("main/*/*.mp4"))[0])
    with pytest.raises(SystemExit) as exit_info:
        decode_cli.main(["--model", str(micro_model_dir), "--quiet", clip, "--lm", str(other)])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("avsr-decode: error: ") and "tokenizer" in err
    assert len(err.splitlines()) == 1


def test_bad_lm_configs_are_one_line(train_data, tmp_path, capsys) -> None:
    for extra, message in [
        (["model.arch=huge"], "model.arch: 'huge'"),
        (["dataset.tokenizer=null"], "dataset.tokenizer"),
        (["dataset.text_files=[missing.txt]"], "missing.txt: cannot be read"),
    ]:
        code = _train(tmp_path / "run", train_data, *extra)
        err = capsys.readouterr().err
        assert code == 2 and message in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()
