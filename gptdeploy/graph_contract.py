"""The decoder graph's contract: the names, files and position ids that the exporter and every runtime share.

One graph serves prefill and decode. It takes the KV cache as inputs and returns the extended cache as outputs
(past in, present out), so a runtime calls it for the prompt (past length 0) and for every generated token:

    inputs   input_ids [B,S] int64, attention_mask [B,P+S] int64, position_ids [B,S] int64,
             past_key_values.{i}.key / .value [B,H_kv,P,Dh] for each layer i
    outputs  logits [B,S,vocab] float32, present.{i}.key / .value [B,H_kv,P+S,Dh]

Batch, sequence and past length are dynamic. An encoder (a model pretrained with the MLM objective) has no cache:

    inputs   input_ids [B,S] int64, attention_mask [B,S] int64 (right padding)
    outputs  logits [B,S,vocab] float32, and class_scores [B,labels] float32 when the model has a classification head
 Torch-free on purpose: the ONNX Runtime and TensorRT backends read it
on machines without torch, and `runtimes/` never imports `export/`.
"""

from __future__ import annotations

import numpy as np

GRAPH_FILE = "model.onnx"  # the graph file inside an artifact's folder; its weights are GRAPH_FILE + ".data"
ENGINE_FILE = "model.plan"  # a TensorRT engine's file inside its folder
PARAMETERS_KEY = "gptdeploy.parameters"  # graph metadata: {model parameter: [initializer, transposed]}
# 18 is the opset the exporter's op library (torchlib) is written for, so no version conversion runs, and every op it
# emits for this model runs on ONNX Runtime's CPU provider.
DEFAULT_OPSET = 18

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
POSITION_IDS = "position_ids"
LOGITS = "logits"
CLASS_SCORES = "class_scores"  # an encoder's classification head
PAST_KEY = "past_key_values.{}.key"
PAST_VALUE = "past_key_values.{}.value"
PRESENT_KEY = "present.{}.key"
PRESENT_VALUE = "present.{}.value"
TOKEN_INPUTS = (INPUT_IDS, ATTENTION_MASK, POSITION_IDS)  # the inputs before the cache, in graph order
# The slot graph (export/slot_graph.py): per-row lengths instead of a mask, a cache preallocated to the context
SEQLENS_K = "seqlens_k"  # [B] int32: each row's length after this call, minus one
TOTAL_SEQUENCE_LENGTH = "total_sequence_length"  # [] int32: the longest row's length after this call
LOGITS_TO_KEEP = "logits_to_keep"  # [1] int64: logits for this many last positions
MAX_SEQUENCE_DIM = "max_sequence"  # the cache buffers' length axis: the context, fixed for a runtime

BATCH_DIM = "batch"
SEQUENCE_DIM = "sequence"
PAST_DIM = "past_sequence"
TOTAL_DIM = f"{PAST_DIM} + {SEQUENCE_DIM}"  # the present's length; the mask's too


def past_names(n_layer: int) -> list[str]:
    """Cache inputs in graph order: key then value for each layer."""
    return [name.format(i) for i in range(n_layer) for name in (PAST_KEY, PAST_VALUE)]


def present_names(n_layer: int) -> list[str]:
    """Cache outputs in graph order, matching `past_names` one to one."""
    return [name.format(i) for i in range(n_layer) for name in (PRESENT_KEY, PRESENT_VALUE)]


def input_names(n_layer: int) -> list[str]:
    """All graph inputs in order."""
    return [*TOKEN_INPUTS, *past_names(n_layer)]


def slot_input_names(n_layer: int, learned_positions: bool) -> list[str]:
    """All inputs of the slot graph in order (position_ids only for learned positions; rotary ones come from
    seqlens_k)."""
    positions = [POSITION_IDS] if learned_positions else []
    return [INPUT_IDS, *positions, SEQLENS_K, TOTAL_SEQUENCE_LENGTH, LOGITS_TO_KEEP, *past_names(n_layer)]


def output_names(n_layer: int) -> list[str]:
    """All graph outputs in order."""
    return [LOGITS, *present_names(n_layer)]


def position_ids(attention_mask: np.ndarray, new_tokens: int) -> np.ndarray:
    """Positions (B, new_tokens) of the last `new_tokens` columns of a (B, P+S) mask, counting real tokens only, so
    left padding never shifts a row: the positions a prompt has alone are the positions it has in a batch."""
    positions = np.cumsum(attention_mask, axis=1, dtype=np.int64) - 1
    return np.ascontiguousarray(np.maximum(positions[:, -new_tokens:], 0))


def encoder_input_names() -> list[str]:
    return [INPUT_IDS, ATTENTION_MASK]


def encoder_output_names(num_labels: int) -> list[str]:
    return [LOGITS, CLASS_SCORES] if num_labels else [LOGITS]


def graph_io(config) -> dict[str, list[str]]:
    """The inputs and outputs of the graph a model config exports to (a decoder's or an encoder's), as the manifest
    records them."""
    if config.causal:
        return {"inputs": input_names(config.n_layer), "outputs": output_names(config.n_layer)}
    return {"inputs": encoder_input_names(), "outputs": encoder_output_names(config.num_labels)}
