"""The slot graph for ONNX Runtime: the decoder rebuilt from the exported graph's weights around ORT's fused
operators, with its KV cache in one preallocated buffer per layer that every step updates in place.

    inputs   input_ids [B,S] int64, position_ids [B,S] int64 (learned positions only), seqlens_k [B] int32,
             total_sequence_length [] int32, logits_to_keep [1] int64,
             past_key_values.{i}.key / .value [B,H_kv,max_sequence,Dh] float32
    outputs  logits [B,logits_to_keep,vocab] float32, present.{i}.key / .value: the same buffers as the past

Row b of the cache holds one sequence from position 0 (right-aligned: no left padding); `seqlens_k[b]` is its
length after this call minus one. GroupQueryAttention writes the new keys and values at their positions in the
buffer bound as both past and present, so a step copies no cache, and a call may append a whole prompt, a chunk of
one, or one token to each of several rows. Attention uses packed QKV (one MatMul) and applies the rotary embedding
itself (`do_rotary`, half-split layout, positions from `seqlens_k`); residual adds fuse into Skip(Simplified)
LayerNormalization; GELU is FastGelu (the tanh form our model uses); only the last `logits_to_keep` positions
reach the LM head. This is the form onnxruntime-genai's builder emits for Llama models (the same operators,
plus the slot inputs); it is built from weights rather than pattern-matched, so every option of our model maps
the same way.

The weights come from the fp32 export, whose metadata says which initializer holds each parameter.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from gptdeploy.config import GPTConfig
from gptdeploy.errors import ExportError
from gptdeploy.graph_contract import (
    INPUT_IDS,
    LOGITS,
    LOGITS_TO_KEEP,
    MAX_SEQUENCE_DIM,
    PARAMETERS_KEY,
    POSITION_IDS,
    SEQLENS_K,
    TOTAL_SEQUENCE_LENGTH,
    past_names,
    present_names,
)

SLOT_OPSET = 21  # int4 tensors (GatherBlockQuantized) need 21: the quantizers then need no version conversion
MS = "com.microsoft"


class _Builder:
    """Nodes, initializers and unique names for one graph."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: dict[str, onnx.TensorProto] = {}

    def weight(self, name: str) -> str:
        """A model parameter as an initializer named after it, in the layout MatMul(x, W) reads for 2-D weights."""
        if name not in self.initializers:
            self.initializers[name] = numpy_helper.from_array(self.weights[name], name)
        return name

    def half(self, prefix: str, which: str, config: GPTConfig) -> tuple[str, str]:
        """The gate or up half of a SwiGLU projection stored as [gate; up]: (weight, bias) initializer names."""
        width = config.hidden_size
        columns = slice(0, width) if which == "gate" else slice(width, 2 * width)
        weight, bias = f"{prefix}.{which}.weight", f"{prefix}.{which}.bias"
        if weight not in self.initializers:
            self.constant(weight, np.ascontiguousarray(self.weights[f"{prefix}.weight"][:, columns]))
            if config.bias:
                self.constant(bias, np.ascontiguousarray(self.weights[f"{prefix}.bias"][columns]))
        return weight, bias

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def node(self, op: str, inputs: list[str], name: str, outputs: int = 1, domain: str = "", **attributes) -> list:
        names = [f"{name}/out{i}" if outputs > 1 else f"{name}/out" for i in range(outputs)]
        self.nodes.append(helper.make_node(op, inputs, names, name, domain=domain, **attributes))
        return names

    def linear(self, x: str, prefix: str, bias: bool) -> str:
        out = self.node("MatMul", [x, self.weight(f"{prefix}.weight")], f"{prefix}/MatMul")[0]
        if bias:
            out = self.node("Add", [out, self.weight(f"{prefix}.bias")], f"{prefix}/Add")[0]
        return out


def read_weights(graph: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Every model parameter of an exported graph, 2-D weights transposed to (in, out) for MatMul(x, W); embedding
    tables (wte, wpe) as stored."""
    metadata = {entry.key: entry.value for entry in graph.metadata_props}
    if PARAMETERS_KEY not in metadata:
        raise ExportError("the source graph does not say which initializer holds which weight (no "
                          f"{PARAMETERS_KEY!r} metadata): build the slot graph from an export of this gptdeploy, "
                          "re-export the bundle")  # fmt: skip
    initializers = {tensor.name: tensor for tensor in graph.graph.initializer}
    weights = {}
    for parameter, (initializer, transposed) in json.loads(metadata[PARAMETERS_KEY]).items():
        array = numpy_helper.to_array(initializers[initializer])
        stored = array.T if transposed else array  # as the parameter is, (out, in) for linear layers
        table = parameter.startswith(("wte.", "wpe."))
        weights[parameter] = np.ascontiguousarray(stored if table or stored.ndim != 2 else stored.T)
    return weights


def rotary_caches(config: GPTConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin (max positions, head_dim / 2) of the angles the model computes: position * inv_freq in fp32."""
    exponents = np.arange(0, config.head_dim, 2, dtype=np.float32) / np.float32(config.head_dim)
    inv_freq = (np.float32(1.0) / np.float32(config.rope_theta) ** exponents).astype(np.float32)
    angles = np.arange(config.block_size, dtype=np.float32)[:, None] * inv_freq[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _norm(
    b: _Builder, x: str, prefix: str, config: GPTConfig, skip: str | None = None, bias: str = ""
) -> tuple[str, str | None]:
    """A (Skip)LayerNorm or (Skip)RMSNorm of `x` (+ `skip` + `bias`); returns the normalized output and, with `skip`,
    the sum that carries the residual stream on."""
    gamma = b.weight(f"{prefix}.weight")
    beta = b.weight(f"{prefix}.bias") if config.bias and config.norm == "layernorm" else ""
    if skip is None:
        if config.norm == "rmsnorm":
            return b.node("SimplifiedLayerNormalization", [x, gamma], prefix, epsilon=config.norm_eps, axis=-1,
                          stash_type=1)[0], None  # fmt: skip
        return b.node("LayerNormalization", [x, gamma, beta], prefix, epsilon=config.norm_eps, axis=-1,
                      stash_type=1)[0], None  # fmt: skip
    op = "SkipSimplifiedLayerNormalization" if config.norm == "rmsnorm" else "SkipLayerNormalization"
    inputs = [x, skip, gamma, bias] if config.norm == "rmsnorm" else [x, skip, gamma, beta, bias]
    normalized, _mean, _inv_std, summed = b.node(op, inputs, prefix, outputs=4, domain=MS, epsilon=config.norm_eps)
    return normalized, summed


def _per_head_norm(b: _Builder, x: str, prefix: str, heads: int, config: GPTConfig) -> str:
    """RMSNorm over each head's features of a (B, S, heads * Dh) tensor."""
    per_head = b.node("Reshape", [x, b.constant(f"{prefix}.heads", np.array([0, 0, heads, config.head_dim]))],
                      f"{prefix}/Reshape")[0]  # fmt: skip
    normalized = b.node("SimplifiedLayerNormalization", [per_head, b.weight(f"{prefix}.weight")], prefix,
                        epsilon=config.norm_eps, axis=-1, stash_type=1)[0]  # fmt: skip
    width = b.constant(f"{prefix}.width", np.array([0, 0, heads * config.head_dim]))
    return b.node("Reshape", [normalized, width], f"{prefix}/Flatten")[0]


def _query_key_value(b: _Builder, x: str, prefix: str, config: GPTConfig) -> list[str]:
    """GroupQueryAttention's first three inputs: packed QKV from one MatMul, or, with per-head query and key norms,
    the three tensors split and normalized."""
    qkv = b.linear(x, f"{prefix}.c_attn", config.bias or config.qkv_bias)  # (B, S, (n_head + 2 n_kv) Dh)
    if not config.qk_norm:
        return [qkv, "", ""]
    widths = np.array([config.n_head, config.kv_heads, config.kv_heads]) * config.head_dim
    q, k, v = b.node("Split", [qkv, b.constant(f"{prefix}.qkv_widths", widths)], f"{prefix}/Split", outputs=3,
                     axis=-1)  # fmt: skip
    q = _per_head_norm(b, q, f"{prefix}.q_norm", config.n_head, config)
    return [q, _per_head_norm(b, k, f"{prefix}.k_norm", config.kv_heads, config), v]


def check_attention_shape(config: GPTConfig) -> None:
    """Refuse head sizes ONNX Runtime's CPU GroupQueryAttention does not run (it checks them only when called)."""
    multiple = 16 if config.positions == "rope" else 8
    if config.head_dim % multiple:
        raise ExportError(f"ONNX Runtime's GroupQueryAttention needs a head size that is a multiple of {multiple}"
                          f"{' with rotary positions' if multiple == 16 else ''}; this model's is {config.head_dim}. "
                          "Run the unfused graph (onnx-fp32) or fuse for --target tensorrt")  # fmt: skip


def _attention(b: _Builder, x: str, layer: int, config: GPTConfig) -> str:
    prefix = f"h.{layer}.attn"
    rotary = {}
    inputs = [*_query_key_value(b, x, prefix, config), past_names(config.n_layer)[2 * layer],
              past_names(config.n_layer)[2 * layer + 1], SEQLENS_K, TOTAL_SEQUENCE_LENGTH]  # fmt: skip
    if config.positions == "rope":
        inputs += ["cos_cache", "sin_cache"]
        rotary = {"do_rotary": 1, "rotary_interleaved": 0}
    outputs = [f"{prefix}/out", *present_names(config.n_layer)[2 * layer : 2 * layer + 2]]
    b.nodes.append(helper.make_node("GroupQueryAttention", inputs, outputs, f"{prefix}/GroupQueryAttention",
                                    domain=MS, num_heads=config.n_head, kv_num_heads=config.kv_heads,
                                    scale=1.0 / math.sqrt(config.head_dim), **rotary))  # fmt: skip
    return b.node("MatMul", [outputs[0], b.weight(f"{prefix}.c_proj.weight")], f"{prefix}.c_proj/MatMul")[0]


def _mlp(b: _Builder, x: str, layer: int, config: GPTConfig) -> str:
    prefix = f"h.{layer}.mlp"
    if config.mlp == "gelu":
        hidden = b.node("MatMul", [x, b.weight(f"{prefix}.c_fc.weight")], f"{prefix}.c_fc/MatMul")[0]
        bias = [b.weight(f"{prefix}.c_fc.bias")] if config.bias else []
        hidden = b.node("FastGelu", [hidden, *bias], f"{prefix}/FastGelu", domain=MS)[0]
    else:  # c_fc holds [gate; up]: two MatMuls on its halves need no Split of the activations
        gate, up = (b.half(f"{prefix}.c_fc", half, config) for half in ("gate", "up"))
        gate = b.node("MatMul", [x, gate[0]], f"{prefix}.gate/MatMul")[0]
        up = b.node("MatMul", [x, up[0]], f"{prefix}.up/MatMul")[0]
        if config.bias:
            gate = b.node("Add", [gate, b.half(f"{prefix}.c_fc", "gate", config)[1]], f"{prefix}.gate/Add")[0]
            up = b.node("Add", [up, b.half(f"{prefix}.c_fc", "up", config)[1]], f"{prefix}.up/Add")[0]
        silu = b.node("Mul", [gate, b.node("Sigmoid", [gate], f"{prefix}/Sigmoid")[0]], f"{prefix}/SiLU")[0]
        hidden = b.node("Mul", [silu, up], f"{prefix}/Mul")[0]
    return b.node("MatMul", [hidden, b.weight(f"{prefix}.c_proj.weight")], f"{prefix}.c_proj/MatMul")[0]


def build_slot_graph(config: GPTConfig, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The slot graph of a model with this config and these parameters (as `read_weights` returns them)."""
    check_attention_shape(config)
    b = _Builder(weights)
    x = b.node("Gather", [b.weight("wte.weight"), INPUT_IDS], "wte")[0]
    inputs = [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "sequence"])]
    if config.positions == "learned":
        inputs.append(helper.make_tensor_value_info(POSITION_IDS, TensorProto.INT64, ["batch", "sequence"]))
        x = b.node("Add", [x, b.node("Gather", [b.weight("wpe.weight"), POSITION_IDS], "wpe")[0]], "embed")[0]
    else:
        cos, sin = rotary_caches(config)
        b.constant("cos_cache", cos)
        b.constant("sin_cache", sin)
    inputs += [
        helper.make_tensor_value_info(SEQLENS_K, TensorProto.INT32, ["batch"]),
        helper.make_tensor_value_info(TOTAL_SEQUENCE_LENGTH, TensorProto.INT32, []),
        helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, [1]),
    ]
    cache_shape = ["batch", config.kv_heads, MAX_SEQUENCE_DIM, config.head_dim]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, cache_shape) for n in past_names(config.n_layer)]
    logits_shape = ["batch", LOGITS_TO_KEEP, config.vocab_size]
    outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, logits_shape)]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, cache_shape) for n in present_names(config.n_layer)]

    def output_bias(prefix: str) -> str:  # a branch's output bias, added inside the next skip normalization
        return b.weight(f"{prefix}.c_proj.bias") if config.bias else ""

    normalized, _ = _norm(b, x, "h.0.ln_1", config)
    residual = x
    for layer in range(config.n_layer):
        attended = _attention(b, normalized, layer, config)
        normalized, residual = _norm(b, attended, f"h.{layer}.ln_2", config, residual, output_bias(f"h.{layer}.attn"))
        projected = _mlp(b, normalized, layer, config)
        following = f"h.{layer + 1}.ln_1" if layer + 1 < config.n_layer else "ln_f"
        normalized, residual = _norm(b, projected, following, config, residual, output_bias(f"h.{layer}.mlp"))

    start = b.node("Neg", [LOGITS_TO_KEEP], "logits_start")[0]
    end = b.constant("logits_end", np.array([np.iinfo(np.int64).max], dtype=np.int64))
    axis = b.constant("sequence_axis", np.array([1], dtype=np.int64))
    kept = b.node("Slice", [normalized, start, end, axis], "keep_positions")[0]
    head = b.weight("lm_head.weight") if not config.tie_embeddings else None
    if head is None:  # the tied head reads the embedding table transposed, like the export does
        head = b.node("Transpose", [b.weight("wte.weight")], "lm_head/Transpose", perm=[1, 0])[0]
    b.nodes.append(helper.make_node("MatMul", [kept, head], [LOGITS], "lm_head/MatMul"))

    graph = helper.make_graph(b.nodes, "gptdeploy-slots", inputs, outputs, list(b.initializers.values()))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", SLOT_OPSET), helper.make_opsetid(MS, 1)],
                             producer_name="gptdeploy")  # fmt: skip


def write_slot_graph(source: Path, target: Path, config: GPTConfig) -> dict:
    """Read the exported fp32 graph at `source`, write its slot graph (weights as external data) to `target`."""
    from gptdeploy.export.quantize_transforms import save_graph

    weights = read_weights(onnx.load(str(source)))
    if config.tie_embeddings and "lm_head.weight" in weights:
        weights.pop("lm_head.weight")
    model = build_slot_graph(config, weights)
    save_graph(model, target)
    return {"nodes": len(model.graph.node)}
