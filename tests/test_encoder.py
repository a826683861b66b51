"""fill-mask and classify on the torch reference, through the API and the CLI."""

import json

import numpy as np
import pytest
import torch

from gptdeploy.checkpoint import load_checkpoint
from gptdeploy.encoder import classify, encode_texts, fill_mask
from gptdeploy.errors import BackendError, GenerationError
from tests.test_cli import run

TEXTS = ["Mia lives in <|mask|>.", "Tom had <|mask|> apples and <|mask|> pears."]


def test_fill_mask_ranks_the_models_own_probabilities(encoder_dir):
    results = fill_mask(encoder_dir, TEXTS, top_k=4)
    checkpoint = load_checkpoint(encoder_dir)
    tokenizer = checkpoint.tokenizer
    assert [len(r.predictions) for r in results] == [1, 2]
    ids, _ = encode_texts(tokenizer, TEXTS[:1], 128)
    with torch.no_grad():
        logits = checkpoint.model(torch.from_numpy(ids))[0][0].double()
    position = int(np.flatnonzero(ids[0] == tokenizer.mask_id)[0])
    scores = logits[position].clone()
    scores[sorted(tokenizer.special_ids)] = -torch.inf
    expected = scores.softmax(-1).topk(4)
    best = results[0].predictions[0]
    assert [p["token_id"] for p in best] == expected.indices.tolist()
    np.testing.assert_allclose([p["probability"] for p in best], expected.values.numpy(), rtol=1e-5)
    words = [*tokenizer.encode("Mia lives in"), best[0]["token_id"], *tokenizer.encode(".")]
    assert results[0].filled == tokenizer.decode(words)


def test_classify_gives_every_labels_probability(classifier_dir):
    results = classify(classifier_dir, ["Mia lives in Riverton.", "Tom had apples."])
    checkpoint = load_checkpoint(classifier_dir)
    ids, mask = encode_texts(checkpoint.tokenizer, ["Mia lives in Riverton.", "Tom had apples."], 128)
    with torch.no_grad():
        scores = checkpoint.model.classify(torch.from_numpy(ids), torch.from_numpy(mask))
    assert [r.label for r in results] == [["no", "yes"][i] for i in scores.argmax(-1).tolist()]
    for result in results:
        assert set(result.probabilities) == {"no", "yes"} and sum(result.probabilities.values()) == pytest.approx(1)


def test_bad_requests_are_one_line_errors(encoder_dir, checkpoint_dir):
    with pytest.raises(GenerationError, match="has no <\\|mask\\|>"):
        fill_mask(encoder_dir, "no mask here")
    with pytest.raises(GenerationError, match="no classification head"):
        classify(encoder_dir, "text")
    with pytest.raises(BackendError, match="is a decoder"):
        fill_mask(checkpoint_dir, TEXTS[0])
    with pytest.raises(GenerationError, match="parameter top_k must be int"):
        fill_mask(encoder_dir, TEXTS[0], top_k="3")
    with pytest.raises(GenerationError, match="more than the context"):
        fill_mask(encoder_dir, "word " * 300 + "<|mask|>")


def test_the_cli_prints_text_or_json(encoder_dir, classifier_dir):
    data = json.loads(run("fill-mask", encoder_dir, TEXTS[0], "--top-k", "2", "--json").stdout)
    assert len(data["results"][0]["predictions"][0]) == 2
    assert "mask 1:" in run("fill-mask", encoder_dir, TEXTS[0]).output
    data = json.loads(run("classify", classifier_dir, "one", "two", "--json").stdout)
    assert [r["text"] for r in data["results"]] == ["one", "two"]
    failed = run("classify", classifier_dir, "x", "--backend", "onnxruntime", ok=False)
    assert failed.exit_code == 1 and "is a checkpoint, not a bundle" in failed.output
