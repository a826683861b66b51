import json

import pytest
import torch

from gptdeploy.checkpoint import load_checkpoint, read_config
from gptdeploy.classification import label_names, read_labeled
from gptdeploy.corpus.genres import LabeledText
from gptdeploy.encoder import encode_texts
from gptdeploy.errors import DataError
from gptdeploy.stages import finetune_classifier
from gptdeploy.train import TrainConfig

FRUIT = ["apple", "pear", "plum", "cherry", "melon", "grape"]
PLACES = ["river", "hill", "town", "market", "bridge", "road"]


def separable(count: int, offset: int = 0) -> list[LabeledText]:
    """Texts whose label is the kind of word they name: learnable in a few dozen steps."""
    examples = []
    for i in range(offset, offset + count):
        words, label = (FRUIT, "fruit") if i % 2 else (PLACES, "place")
        examples.append(LabeledText(f"Mia saw the {words[i % 6]} and the {words[(i // 2) % 6]}.", label))
    return examples


QUICK = TrainConfig(max_steps=40, batch_size=16, learning_rate=3e-3, warmup_steps=5, eval_interval=40,
                    checkpoint_interval=40, log_interval=10)  # fmt: skip


@pytest.mark.parametrize("causal", [False, True])
def test_a_fine_tuned_classifier_learns_and_records_its_labels(causal, encoder_dir, checkpoint_dir, tmp_path):
    base = checkpoint_dir if causal else encoder_dir
    result = finetune_classifier(base, tmp_path, (separable(64), separable(24, 64)), QUICK, progress=False)
    assert result.labels == ["fruit", "place"]
    assert result.heldout_accuracy >= 0.9, result
    config, info = read_config(tmp_path)
    assert config.num_labels == 2 and config.causal == causal and info["labels"] == ["fruit", "place"]
    model = load_checkpoint(tmp_path).model
    assert model.score.weight.shape == (2, config.n_embd)


def test_padding_does_not_change_a_class_score(encoder_dir):
    checkpoint = load_checkpoint(encoder_dir)
    torch.manual_seed(0)
    from gptdeploy.model import GPT

    model = GPT(checkpoint.config.__class__(**{**checkpoint.config.to_dict(), "num_labels": 3})).eval()
    inputs, mask = map(torch.from_numpy, encode_texts(checkpoint.tokenizer, ["Mia lives in Riverton.", "Tom"], 128))
    with torch.no_grad():
        batched = model.classify(inputs, mask)
        alone = model.classify(inputs[1:, : int(mask[1].sum())])
    torch.testing.assert_close(batched[1:], alone, atol=1e-5, rtol=1e-5)


def test_labelled_files_are_checked(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"text": "a", "label": "x"}) + "\n" + json.dumps({"text": "b"}) + "\n")
    with pytest.raises(DataError, match="line 2: expected an object whose 'text' and 'label'"):
        read_labeled(path)
    with pytest.raises(DataError, match="does not exist"):
        read_labeled(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="at least 2 labels"):
        label_names([LabeledText("a", "x")], [])
    with pytest.raises(DataError, match=r"held-out labels \['z'\] never occur"):
        label_names([LabeledText("a", "x"), LabeledText("b", "y")], [LabeledText("c", "z")])


def test_the_cli_fine_tunes_a_classifier_from_a_jsonl_file(encoder_dir, tmp_path):
    from tests.test_cli import run

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(e.to_json()) + "\n" for e in separable(60)))
    result = run("finetune", encoder_dir, "--task", "classify", "--data", data, "--out", tmp_path / "out",
                 "--max-steps", "5", "--json")  # fmt: skip
    report = json.loads(result.stdout)
    assert report["labels"] == ["fruit", "place"] and report["heldout_examples"] == 6  # the last tenth
    assert report["steps"] == 5 and 0 <= report["heldout_accuracy"] <= 1
    failed = run("finetune", encoder_dir, "--task", "classify", "--heldout", data, "--out", tmp_path / "x", ok=False)
    assert failed.exit_code == 1 and "--heldout needs --data" in failed.output
