"""Tensor names between gptdeploy's model and each Hugging Face architecture, one table used both ways.

Our model keeps q/k/v in one matrix (`c_attn`: [q; k; v]) and SwiGLU's gate and up projections in one (`c_fc`:
[gate; up]), which is Phi-3's own layout; Llama, Mistral and Qwen store them as separate projections. So each tensor
of ours is one Hugging Face tensor or several stacked along the output rows: the import stacks them, the export
splits them. GPT-2's Conv1D layers store weights as (in, out) and are transposed both ways. Every rotary family uses
the half-split rotation layout ours does, so no rows are permuted.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptdeploy.config import GPTConfig
from gptdeploy.errors import CheckpointError

# Buffers some transformers versions save next to the weights: GPT-2's causal masks, Llama's inverse frequencies.
IGNORED = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")


@dataclass(frozen=True)
class Source:
    """Where one tensor of ours lives in a Hugging Face checkpoint."""

    names: tuple[str, ...]  # Hugging Face tensors, stacked along the rows in this order
    rows: tuple[int, ...] | None = None  # their row counts, when there are several
    transposed: bool = False  # GPT-2's Conv1D (in, out) layout


def tensor_map(config: GPTConfig, family: str) -> dict[str, Source]:
    """Our state-dict names -> their Hugging Face sources, for a config that maps onto `family`."""
    table = _gpt2_map(config) if family == "gpt2" else _rotary_map(config, family)
    if not config.tie_embeddings:
        table["lm_head.weight"] = Source(("lm_head.weight",))
    return table


def _gpt2_map(config: GPTConfig) -> dict[str, Source]:
    conv1d = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    top = ("wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias")
    table = {name: Source((f"transformer.{name}",)) for name in top}
    for i in range(config.n_layer):
        for norm in ("ln_1", "ln_2"):
            for kind in ("weight", "bias"):
                table[f"h.{i}.{norm}.{kind}"] = Source((f"transformer.h.{i}.{norm}.{kind}",))
        for layer in conv1d:
            table[f"h.{i}.{layer}.weight"] = Source((f"transformer.h.{i}.{layer}.weight",), transposed=True)
            table[f"h.{i}.{layer}.bias"] = Source((f"transformer.h.{i}.{layer}.bias",))
    return table


def _rotary_map(config: GPTConfig, family: str) -> dict[str, Source]:
    q, kv, ff = config.n_head * config.head_dim, config.kv_heads * config.head_dim, config.hidden_size
    fused = family == "phi3"
    table = {"wte.weight": Source(("model.embed_tokens.weight",)), "ln_f.weight": Source(("model.norm.weight",))}
    for i in range(config.n_layer):
        hf, ours = f"model.layers.{i}", f"h.{i}"
        attn, mlp = f"{hf}.self_attn", f"{hf}.mlp"
        table[f"{ours}.ln_1.weight"] = Source((f"{hf}.input_layernorm.weight",))
        table[f"{ours}.ln_2.weight"] = Source((f"{hf}.post_attention_layernorm.weight",))
        if config.qk_norm:
            table[f"{ours}.attn.q_norm.weight"] = Source((f"{attn}.q_norm.weight",))
            table[f"{ours}.attn.k_norm.weight"] = Source((f"{attn}.k_norm.weight",))
        for kind in ("weight", "bias"):
            if kind == "weight" or config.bias or config.qkv_bias:
                table[f"{ours}.attn.c_attn.{kind}"] = (
                    Source((f"{attn}.qkv_proj.{kind}",)) if fused else
                    Source(tuple(f"{attn}.{p}_proj.{kind}" for p in "qkv"), (q, kv, kv)))  # fmt: skip
            if kind == "weight" or config.bias:
                table[f"{ours}.attn.c_proj.{kind}"] = Source((f"{attn}.o_proj.{kind}",))
                table[f"{ours}.mlp.c_fc.{kind}"] = (
                    Source((f"{mlp}.gate_up_proj.{kind}",)) if fused else
                    Source((f"{mlp}.gate_proj.{kind}", f"{mlp}.up_proj.{kind}"), (ff, ff)))  # fmt: skip
                table[f"{ours}.mlp.c_proj.{kind}"] = Source((f"{mlp}.down_proj.{kind}",))
    return table


def gather(tensors: dict, config: GPTConfig, family: str) -> dict:
    """Our state dict from a Hugging Face checkpoint's tensors (float32); every tensor must find its place."""
    import torch

    if family == "gpt2" and not any(name.startswith("transformer.") for name in tensors):  # a GPT2Model's names
        tensors = {name if name == "lm_head.weight" else f"transformer.{name}": t for name, t in tensors.items()}
    source = _Tensors(tensors)
    state = {}
    for ours, where in tensor_map(config, family).items():
        parts = [source.take(name) for name in where.names]
        try:
            tensor = torch.cat(parts) if len(parts) > 1 else parts[0]
        except RuntimeError as error:
            shapes = ", ".join(f"{n} {tuple(p.shape)}" for n, p in zip(where.names, parts, strict=True))
            raise CheckpointError(f"tensors {shapes} do not stack into {ours}: {error}".splitlines()[0]) from error
        state[ours] = tensor.t().contiguous() if where.transposed else tensor
    if config.tie_embeddings:
        source.tensors.pop("lm_head.weight", None)  # some tied checkpoints store the shared matrix twice
        state["lm_head.weight"] = state["wte.weight"]
    source.finish()
    return state


def scatter(state: dict, config: GPTConfig, family: str) -> dict:
    """A Hugging Face checkpoint's tensors from our state dict: the inverse of `gather`."""
    tensors = {}
    for ours, where in tensor_map(config, family).items():
        tensor = state[ours].t() if where.transposed else state[ours]
        parts = tensor.split(list(where.rows)) if where.rows else [tensor]
        tensors.update({name: part.contiguous().clone() for name, part in zip(where.names, parts, strict=True)})
    return tensors


class _Tensors:
    """The folder's tensors, taken by name; whatever is never taken is reported as not understood."""

    def __init__(self, tensors: dict):
        self.tensors = {name: tensor for name, tensor in tensors.items() if not name.endswith(IGNORED)}

    def take(self, name: str):
        if name not in self.tensors:
            raise CheckpointError(f"weights lack tensor {name!r}; the files do not match config.json")
        return self.tensors.pop(name).float()

    def finish(self) -> None:
        if self.tensors:
            left = sorted(self.tensors)
            raise CheckpointError(f"weights hold tensors gptdeploy's model has no place for: {', '.join(left[:5])}"
                                  f"{' ...' if len(left) > 5 else ''}")  # fmt: skip
