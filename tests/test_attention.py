import json

import matplotlib.image
import numpy as np
import pytest
import torch

from gptdeploy.attention import AttentionMaps, attention_maps, plot_attention
from gptdeploy.errors import GenerationError
from gptdeploy.model import recording_attention
from tests.helpers import tiny_model

PROMPT = "Mia lives in Riverton."


@pytest.mark.parametrize("causal", [True, False])
def test_weights_are_distributions_masked_only_for_a_causal_model(causal, tokenizer):
    maps = attention_maps(tiny_model(causal=causal), tokenizer, PROMPT)
    T = len(tokenizer.encode(PROMPT)) + 1
    assert maps.weights.shape == (2, 4, T, T) and maps.tokens[0] == "<|bos|>"
    np.testing.assert_allclose(maps.weights.sum(axis=-1), 1.0, atol=1e-5)
    above_diagonal = maps.weights[..., np.triu_indices(T, k=1)[0], np.triu_indices(T, k=1)[1]]
    if causal:
        assert np.abs(above_diagonal).max() == 0.0
    else:
        assert above_diagonal.min() > 0.0  # every query sees the tokens after it
    assert maps.entropy.shape == (2, 4, T) and (maps.entropy >= 0).all()


@pytest.mark.parametrize("causal", [True, False])
def test_recording_does_not_change_what_the_model_computes(causal):
    model = tiny_model(causal=causal)
    ids = torch.randint(0, 320, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(ids)[0]
        with recording_attention(model) as layers:
            recorded = model(ids)[0]
            assert all(layer.weights.shape == (2, 4, 9, 9) for layer in layers)
    torch.testing.assert_close(recorded, plain, atol=1e-5, rtol=1e-5)
    assert all(block.attn.weights is None and not block.attn.record_weights for block in model.h)


def test_the_png_has_a_panel_per_layer_and_head(tokenizer, tmp_path):
    maps = attention_maps(tiny_model(), tokenizer, PROMPT)
    assert plot_attention(maps, tmp_path / "all.png") == 2 * 4
    assert plot_attention(maps.select(1, None), tmp_path / "layer.png") == 4
    assert plot_attention(maps.select(1, 2), tmp_path / "one.png") == 1
    full, layer, one = (matplotlib.image.imread(tmp_path / f"{name}.png") for name in ("all", "layer", "one"))
    assert full.shape[0] == pytest.approx(2 * layer.shape[0], rel=0.05)  # two rows of panels against one
    assert layer.shape[1] == pytest.approx(4 * one.shape[1], rel=0.05)  # four columns against one
    with pytest.raises(GenerationError, match="layer 2 does not exist: the model has 2"):
        maps.select(2, None)


def test_the_summary_names_previous_token_and_bos_heads():
    T = 6
    previous = np.zeros((T, T))
    previous[0, 0], previous[np.arange(1, T), np.arange(T - 1)] = 1.0, 1.0
    bos = np.zeros((T, T))
    bos[:, 0] = 1.0
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    maps = AttentionMaps(["t"] * T, np.stack([previous, bos, uniform])[None], True)
    patterns = [head["pattern"] for head in maps.head_summary()]
    assert patterns == ["previous token", "bos", ""]
    assert maps.entropy[0, 0].max() == pytest.approx(0.0, abs=1e-6)
    assert maps.entropy[0, 2, -1] == pytest.approx(np.log2(T))


def test_the_cli_writes_the_png_and_json(checkpoint_dir, tmp_path):
    from tests.test_cli import run

    result = run("attention", checkpoint_dir, "-p", PROMPT, "-o", tmp_path / "a.png", "--layer", "1", "--json")
    data = json.loads(result.stdout)
    assert data["panels"] == 4 and (tmp_path / "a.png").is_file() and data["causal"]
    assert [(h["layer"], h["head"]) for h in data["heads"]] == [(1, 0), (1, 1), (1, 2), (1, 3)]
    text = run("attention", checkpoint_dir, "-p", PROMPT).output
    assert "previous" in text and "<|bos|>" in text
