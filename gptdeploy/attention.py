"""Attention maps of the PyTorch reference: every layer's and head's weights for one prompt, a grid of heatmaps,
and the summaries people look at first (how spread out each row is, which heads look at the previous token or at
bos).

The weights come from the model's own forward pass (`gptdeploy.model.recording_attention`), so they are the ones its
output is made from, for causal and MLM models alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptdeploy.errors import GenerationError

FOCUS_SHARE = 0.5  # a head "attends to X" when, averaged over its query rows, more than this share of weight is on X


@dataclass(frozen=True)
class AttentionMaps:
    tokens: list[str]  # the prompt's tokens as text, bos first
    weights: np.ndarray  # (layers, heads, T, T): row = query position, column = key position; rows sum to 1
    causal: bool
    first_layer: int = 0  # the numbers of the first layer and head held (a selection holds fewer)
    first_head: int = 0

    @property
    def entropy(self) -> np.ndarray:
        """(layers, heads, T) entropy in bits of each query row: 0 = all weight on one token."""
        p = np.clip(self.weights, 1e-12, 1.0)
        return -(self.weights * np.log2(p)).sum(axis=-1)

    def head_summary(self) -> list[dict]:
        """Per head: mean row entropy, and the mean share of weight on the previous token and on bos (over the rows
        that have a previous token), with the pattern it shows when a share passes FOCUS_SHARE."""
        T, entropy = self.weights.shape[-1], self.entropy
        rows = np.arange(1, T)
        summary = []
        for layer, heads in enumerate(self.weights):
            for head, w in enumerate(heads):
                previous = float(w[rows, rows - 1].mean()) if T > 1 else 0.0
                bos = float(w[rows, 0].mean()) if T > 1 else 1.0
                pattern = "previous token" if previous > FOCUS_SHARE else "bos" if bos > FOCUS_SHARE else ""
                summary.append({
                    "layer": layer + self.first_layer, "head": head + self.first_head,
                    "mean_entropy_bits": float(entropy[layer, head].mean()), "previous_token_share": previous,
                    "bos_share": bos, "pattern": pattern,
                })  # fmt: skip
        return summary

    def select(self, layer: int | None, head: int | None) -> AttentionMaps:
        """Only one layer and/or one head (None: all)."""
        layers, heads = self.weights.shape[:2]
        for name, value, count in (("layer", layer, layers), ("head", head, heads)):
            if value is not None and not 0 <= value < count:
                raise GenerationError(f"{name} {value} does not exist: the model has {count} (0 to {count - 1})")
        weights = self.weights if layer is None else self.weights[layer : layer + 1]
        weights = weights if head is None else weights[:, head : head + 1]
        return AttentionMaps(self.tokens, weights, self.causal, layer or 0, head or 0)

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "causal": self.causal, "weights": self.weights.round(6).tolist(),
                "entropy_bits": self.entropy.round(6).tolist(), "heads": self.head_summary()}  # fmt: skip


def attention_maps(model, tokenizer, prompt: str) -> AttentionMaps:
    """The attention weights of `model` (a `GPT`) for bos + `prompt`, from one forward pass of the model itself."""
    import torch

    from gptdeploy.model import recording_attention

    ids = tokenizer.encode(prompt, bos=True)
    if len(ids) > model.config.block_size:
        raise GenerationError(f"the prompt has {len(ids)} tokens, more than the context of {model.config.block_size}")
    with recording_attention(model) as layers, torch.no_grad():
        model(torch.tensor([ids], device=next(model.parameters()).device))
        weights = np.stack([layer.weights[0].float().cpu().numpy() for layer in layers])  # (L, H, T, T)
    tokens = [tokenizer.decode([token], skip_special=False) for token in ids]
    return AttentionMaps(tokens, weights, model.config.causal)


def plot_attention(maps: AttentionMaps, out: str | Path) -> int:
    """Draw a grid of heatmaps (a row per layer, a column per head) with the tokens on both axes; returns the number
    of panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gptdeploy.fileio import atomic_write

    layers, heads, T, _ = maps.weights.shape
    size = max(2.5, 0.28 * T)
    figure, axes = plt.subplots(layers, heads, figsize=(size * heads, size * layers), squeeze=False)
    labels = [token.replace("\n", "\\n") for token in maps.tokens]
    for layer in range(layers):
        for head in range(heads):
            axis = axes[layer][head]
            axis.imshow(maps.weights[layer, head], cmap="viridis", vmin=0.0, vmax=1.0)
            axis.set_title(f"layer {layer + maps.first_layer} head {head + maps.first_head}", fontsize=9)
            axis.set_xticks(range(T), labels, rotation=90, fontsize=7)
            axis.set_yticks(range(T), labels, fontsize=7)
    figure.tight_layout()
    atomic_write(Path(out), lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    plt.close(figure)
    return layers * heads
