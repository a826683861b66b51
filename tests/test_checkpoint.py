import json

import pytest
import torch

from gptdeploy.checkpoint import (
    CONFIG_FILE,
    TRAIN_STATE_FILE,
    WEIGHTS_FILE,
    load_checkpoint,
    load_train_state,
    save_checkpoint,
)
from gptdeploy.errors import CheckpointError
from tests.helpers import MODEL_VARIANTS, tiny_model


@pytest.mark.parametrize("variant", ["gpt2", "llama"])
def test_save_then_load_gives_identical_logits(tokenizer, tmp_path, variant):
    model = tiny_model(**MODEL_VARIANTS[variant])
    save_checkpoint(tmp_path, model, tokenizer, {"stage": "pretrain", "step": 3})
    loaded = load_checkpoint(tmp_path)
    idx = torch.randint(0, 320, (1, 8))
    with torch.no_grad():
        assert torch.equal(model(idx)[0], loaded.model(idx)[0])
    assert loaded.config == model.config
    assert loaded.info["step"] == 3 and loaded.info["stage"] == "pretrain"
    assert not list(tmp_path.glob(".*tmp")), "temporary files left behind"


def test_training_state_loads_without_unpickling_objects(tokenizer, tmp_path):
    model = tiny_model()
    state = {"step": 7, "model": model.state_dict(), "optimizer": {}, "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path, model, tokenizer, train_state=state)
    assert load_train_state(tmp_path)["step"] == 7


def test_pickled_objects_in_a_training_state_are_refused(tokenizer, tmp_path):
    save_checkpoint(tmp_path, tiny_model(), tokenizer)
    torch.save({"step": 1, "payload": object()}, tmp_path / TRAIN_STATE_FILE)
    with pytest.raises(CheckpointError, match="cannot read training state"):
        load_train_state(tmp_path)


@pytest.fixture
def saved(tokenizer, tmp_path):
    save_checkpoint(tmp_path, tiny_model(), tokenizer)
    return tmp_path


def test_truncated_weights_are_refused(saved):
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(saved)


def test_missing_files_are_named(saved, tmp_path):
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(saved)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="not been checkpointed|missing"):
        load_train_state(saved)


def test_newer_format_and_corrupt_config_are_refused(saved):
    config = json.loads((saved / CONFIG_FILE).read_text())
    (saved / CONFIG_FILE).write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format 99.*upgrade gptdeploy"):
        load_checkpoint(saved)
    (saved / CONFIG_FILE).write_text(json.dumps({**config, "model": {**config["model"], "n_head": 5}}))
    with pytest.raises(CheckpointError, match="invalid model config"):
        load_checkpoint(saved)
    (saved / CONFIG_FILE).write_text("{")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(saved)


def test_weights_of_another_shape_are_refused(saved, tokenizer):
    save_checkpoint(saved / "other", tiny_model(n_layer=3), tokenizer)
    (saved / WEIGHTS_FILE).write_bytes((saved / "other" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(saved)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_at_load(tokenizer, tmp_path, value):
    model = tiny_model()
    with torch.no_grad():
        model.h[1].mlp.c_fc.weight[3, 5] = value
    save_checkpoint(tmp_path, model, tokenizer)
    with pytest.raises(CheckpointError, match="tensor h.1.mlp.c_fc.weight holds 1 non-finite values \\(NaN or inf\\)"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("name", [CONFIG_FILE, WEIGHTS_FILE, "tokenizer.json"])
def test_a_checkpoint_file_leading_out_of_its_folder_is_not_read(tokenizer, tmp_path, name):
    from gptdeploy.errors import TokenizerError

    save_checkpoint(tmp_path / "elsewhere", tiny_model(), tokenizer)
    save_checkpoint(tmp_path / "model", tiny_model(), tokenizer)
    (tmp_path / "model" / name).unlink()
    (tmp_path / "model" / name).symlink_to(tmp_path / "elsewhere" / name)
    with pytest.raises((CheckpointError, TokenizerError), match="outside the folder \\(through a symlink\\)"):
        load_checkpoint(tmp_path / "model")


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ([1, 2], "not a gptdeploy training state \\(bad or missing step, model, optimizer, rng\\)"),
        ({"step": -1, "model": {}, "optimizer": {}, "rng": torch.zeros(1)}, "bad or missing step"),
        ({"step": 3, "model": {}, "optimizer": {}}, "bad or missing rng"),
    ],
)
def test_a_training_state_with_the_wrong_content_is_named(tmp_path, state, message):
    torch.save(state, tmp_path / TRAIN_STATE_FILE)
    with pytest.raises(CheckpointError, match=f"{message}.*start over with --force"):
        load_train_state(tmp_path)


def test_a_folder_holds_a_checkpoint_once_any_of_its_files_is_there(tmp_path):
    from gptdeploy.checkpoint import METRICS_FILE, holds_checkpoint

    assert not holds_checkpoint(tmp_path / "new") and not holds_checkpoint(tmp_path)
    (tmp_path / METRICS_FILE).write_text("")
    assert holds_checkpoint(tmp_path)
