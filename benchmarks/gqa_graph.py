"""Rewrite our ORT-fused graph's MultiHeadAttention nodes into GroupQueryAttention over a shared KV buffer.

GroupQueryAttention (com.microsoft) takes the cache as a buffer preallocated to the maximum length: when the same
tensor is bound as `past_key` and `present_key`, the CPU kernel writes the new keys at row `seqlens_k[b] - S + 1` in
place instead of concatenating the whole past into a fresh present every step. It takes query/key/value as
(B, S, heads * head_dim), like our fused MultiHeadAttention nodes, and builds the causal mask itself from
`seqlens_k` (tokens cached per row minus one, after this step) and `total_sequence_length`, so the graph's additive
mask (computed from `attention_mask`) goes away, and `attention_mask` with it.

    inputs   input_ids [B,S] int64, position_ids [B,S] int64, seqlens_k [B] int32, total_sequence_length [] int32,
             past_key_values.{i}.key / .value [B,H_kv,max_sequence_length,Dh] float32
    outputs  logits [B,S,vocab] float32, present.{i}.key / .value: the same buffers as the past (bind them so)

Each row's tokens sit at buffer rows 0..seqlens_k[b]: the layout is right-padded, not our runtime's left padding.
"""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from gptdeploy.errors import ExportError
from gptdeploy.graph_contract import ATTENTION_MASK, POSITION_IDS, past_names, present_names

MS_DOMAIN = "com.microsoft"
SEQLENS_K = "seqlens_k"
TOTAL_SEQUENCE_LENGTH = "total_sequence_length"
MAX_DIM = "max_sequence_length"


def _to_group_query_attention(graph: ir.Graph, mha: ir.Node, seqlens: ir.Value, total: ir.Value) -> None:
    query, key, value, bias, padding, _mask, past_key, past_value = (list(mha.inputs) + [None] * 8)[:8]
    if bias is not None or padding is not None or past_key is None or past_value is None or len(mha.outputs) != 3:
        raise ExportError(f"{mha.name}: expected MultiHeadAttention(q, k, v, -, -, mask, past_k, past_v) -> 3 outputs")
    kv_heads = past_key.shape[1] if past_key.shape is not None else None
    if not isinstance(kv_heads, int):
        raise ExportError(f"{mha.name}: the past key's head axis is not static ({past_key.shape})")
    attributes = {"num_heads": mha.attributes["num_heads"].value, "kv_num_heads": kv_heads}
    if "scale" in mha.attributes:
        attributes["scale"] = mha.attributes["scale"].value
    gqa = ir.node(
        "GroupQueryAttention",
        [query, key, value, past_key, past_value, seqlens, total],
        attributes,
        domain=MS_DOMAIN,
        num_outputs=3,
        name=f"{mha.name}_gqa",
    )
    graph.insert_before(mha, gqa)
    for old, new in zip(mha.outputs, gqa.outputs, strict=True):
        new.type, new.shape = old.type, old.shape
        new.name, old.name = old.name, f"{old.name}_mha"
    ir.convenience.replace_all_uses_with(list(mha.outputs), list(gqa.outputs), replace_graph_outputs=True)
    graph.remove(mha, safe=True)


def _with_max_length(value: ir.Value) -> None:
    batch, heads, _, head_dim = value.shape
    value.shape = ir.Shape([batch, heads, MAX_DIM, head_dim])


def to_shared_buffer_gqa(source: str | Path, destination: str | Path) -> int:
    """Write the GroupQueryAttention version of the fused graph at `source`; returns how many nodes it rewrote."""
    model = ir.load(source)
    graph = model.graph
    attention = [node for node in graph if node.domain == MS_DOMAIN and node.op_type == "MultiHeadAttention"]
    if not attention:
        raise ExportError(f"{source} has no com.microsoft MultiHeadAttention node to rewrite")
    batch = graph.inputs[0].shape[0]
    seqlens = ir.Value(name=SEQLENS_K, type=ir.TensorType(ir.DataType.INT32), shape=ir.Shape([batch]))
    total = ir.Value(name=TOTAL_SEQUENCE_LENGTH, type=ir.TensorType(ir.DataType.INT32), shape=ir.Shape([]))
    after_positions = [value.name for value in graph.inputs].index(POSITION_IDS) + 1
    graph.inputs.insert(after_positions, seqlens)
    graph.inputs.insert(after_positions + 1, total)
    for node in attention:
        _to_group_query_attention(graph, node, seqlens, total)
    RemoveUnusedNodesPass()(model)
    mask = next(value for value in graph.inputs if value.name == ATTENTION_MASK)
    if mask.uses():
        raise ExportError(f"{source}: attention_mask still feeds {[use.node.op_type for use in mask.uses()]}")
    graph.inputs.remove(mask)
    caches = {*past_names(len(attention)), *present_names(len(attention))}
    for value in [*graph.inputs, *graph.outputs]:
        if value.name in caches:
            _with_max_length(value)
    destination = Path(destination)
    ir.save(model, destination, external_data=f"{destination.name}.data")
    return len(attention)
