import json

import pytest

from gptdeploy.demo import VARIANTS, DemoPlan, describe_demo, run_demo
from gptdeploy.errors import ConfigError
from gptdeploy.train import TrainConfig

MICRO = DemoPlan(
    preset="tiny",
    pretrain=TrainConfig(max_steps=30, batch_size=4, warmup_steps=5, eval_interval=30, eval_batches=2),
    finetune=TrainConfig(max_steps=20, batch_size=8, warmup_steps=5, eval_interval=20, eval_batches=2),
)


@pytest.mark.slow
def test_demo_runs_end_to_end_then_reuses_its_checkpoints(tmp_path):
    log: list[str] = []
    result = run_demo(tmp_path, MICRO, log=log.append)
    assert "(new)" in log[1] and "(new)" in log[2]
    assert result["pretrain"]["step"] == 30 and result["finetune"]["step"] == 20
    assert 0.0 <= result["heldout"]["accuracy"] <= 1.0 and result["heldout"]["examples"] == 300
    assert result["corpus"]["bits_per_char"] < result["corpus"]["gzip_bits_per_char"]
    assert len(result["generations"]) == 6
    assert json.loads((tmp_path / "demo.json").read_text())["heldout"] == result["heldout"]
    assert (tmp_path / "loss.png").stat().st_size > 0
    measured = {row["artifact"] for row in result["backends"]}
    assert {"checkpoint", "onnx-fp32", "onnx-fused-ort", "onnx-fused-std"} <= measured  # fp32 fusion never drifts
    assert measured | set(result["rejected"]) == {"checkpoint", "onnx-fp32"} | {name for name, _ in VARIANTS}
    table = describe_demo(result)
    assert all(name in table for name, _ in VARIANTS)

    log.clear()
    again = run_demo(tmp_path, MICRO, log=log.append)
    assert "(done)" in log[1] and "(done)" in log[2]
    assert again["heldout"] == result["heldout"]


def test_a_folder_holding_another_presets_run_is_refused(tmp_path):
    (tmp_path / "pretrain").mkdir(parents=True)
    config = {"format": "gptdeploy-checkpoint", "format_version": 1, "preset": "small", "finished": True,
              "model": {"vocab_size": 320, "block_size": 128, "n_layer": 2, "n_head": 4, "n_embd": 64}}  # fmt: skip
    (tmp_path / "pretrain" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="holds a 'small' run; pass --fresh"):
        run_demo(tmp_path, MICRO, log=lambda line: None)
