import json
import logging

import pytest

from gptdeploy.demo import DemoPlan, describe_demo, run_demo
from gptdeploy.errors import ConfigError
from gptdeploy.train import TrainConfig

MICRO = DemoPlan(
    preset="tiny",
    pretrain=TrainConfig(max_steps=30, batch_size=4, warmup_steps=5, eval_interval=30, eval_batches=2),
    finetune=TrainConfig(max_steps=20, batch_size=8, warmup_steps=5, eval_interval=20, eval_batches=2),
)
FUSED = {"onnx-fused-ort", "onnx-fused-std"}
QUANTIZED = {"onnx-int8", "onnx-int8-static", "onnx-fp16", "onnx-int4"}


def stage_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.getMessage().startswith("[")]


@pytest.mark.slow
def test_demo_runs_end_to_end_then_reuses_its_checkpoints(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="gptdeploy")
    result = run_demo(tmp_path, MICRO)
    lines = stage_lines(caplog)
    assert [line[:5] for line in lines] == [f"[{i}/7]" for i in range(1, 8)]
    assert "(new)" in lines[1] and "(new)" in lines[2]
    assert result["pretrain"]["step"] == 30 and result["finetune"]["step"] == 20
    assert result["heldout"]["examples"] == 300
    assert result["corpus"]["bits_per_char"] < result["corpus"]["gzip_bits_per_char"]
    assert len(result["generations"]) == 6
    assert json.loads((tmp_path / "demo.json").read_text())["heldout"] == result["heldout"]
    assert (tmp_path / "loss.png").stat().st_size > 0
    rows = {row["artifact"]: row for row in result["backends"]}
    # fp32 graphs reproduce the reference exactly: the same held-out accuracy as PyTorch, every greedy continuation
    for name in {"checkpoint", "onnx-fp32"} | FUSED:
        assert rows[name]["accuracy"] == result["heldout"]["accuracy"] and rows[name]["parity_passed"], name
    # a quantized variant is either measured or rejected for missing its budget, never lost or failing otherwise
    assert set(rows) | set(result["rejected"]) == {"checkpoint", "onnx-fp32"} | FUSED | QUANTIZED
    assert not set(rows) & set(result["rejected"])
    assert all("missed its budget" in reason for reason in result["rejected"].values()), result["rejected"]
    table = describe_demo(result)
    assert all(name in table for name in FUSED | QUANTIZED)

    caplog.clear()
    again = run_demo(tmp_path, MICRO)
    lines = stage_lines(caplog)
    assert "(done)" in lines[1] and "(done)" in lines[2]
    assert again["heldout"] == result["heldout"]


def test_a_folder_holding_another_presets_run_is_refused(tmp_path):
    (tmp_path / "pretrain").mkdir(parents=True)
    config = {"format": "gptdeploy-checkpoint", "format_version": 1, "preset": "small", "finished": True,
              "model": {"vocab_size": 320, "block_size": 128, "n_layer": 2, "n_head": 4, "n_embd": 64}}  # fmt: skip
    (tmp_path / "pretrain" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="holds a 'small' run; pass --fresh"):
        run_demo(tmp_path, MICRO)


@pytest.mark.slow
def test_the_mlm_demo_pretrains_classifies_exports_and_compares(tmp_path, caplog):
    from gptdeploy.demo_mlm import describe_mlm_demo, run_mlm_demo

    caplog.set_level(logging.INFO, logger="gptdeploy")
    micro = DemoPlan("tiny", TrainConfig(max_steps=20, batch_size=4, warmup_steps=5, eval_interval=20, eval_batches=2),
                     TrainConfig(max_steps=10, batch_size=16, warmup_steps=2, eval_interval=10))  # fmt: skip
    result = run_mlm_demo(tmp_path, micro)
    assert [line[:5] for line in stage_lines(caplog)] == [f"[{i}/6]" for i in range(1, 7)]
    assert result["pretrain"]["step"] == 20 and result["classify"]["step"] == 10
    assert 0 <= result["pretrain"]["val_unigram_accuracy"] <= 1 and result["heldout_examples"] == 600
    rows = {row["artifact"]: row for row in result["backends"]}
    for name in ("checkpoint", "onnx-fp32", "onnx-fused-std"):  # fp32: the reference's answers exactly
        assert rows[name]["accuracy"] == rows["checkpoint"]["accuracy"] and rows[name]["parity_passed"], name
        assert rows[name]["fill_mask_top_k_identical"] == rows[name]["fill_mask_texts"], name
    assert set(rows) | set(result["rejected"]) == {"checkpoint", "onnx-fp32", "onnx-fused-std", "onnx-int8",
                                                   "onnx-fp16", "onnx-int4"}  # fmt: skip
    assert json.loads((tmp_path / "demo-mlm.json").read_text())["backends"] == result["backends"]
    assert "masked-token accuracy" in describe_mlm_demo(result) and "onnx-int8" in describe_mlm_demo(result)
