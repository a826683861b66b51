"""onnxruntime-genai files for an ONNX artifact, so `og.Model(BUNDLE/ARTIFACT_FOLDER)` runs it as it is.

onnxruntime-genai treats a folder as a model when it holds `genai_config.json` (model type, the decoder graph's file
and IO names with per-layer `%d` templates, head counts, context length, special token ids, search defaults) and,
for its tokenizer, `tokenizer.json` + `tokenizer_config.json`. The stage runner writes them into every ONNX
artifact's folder, so they are hashed with the artifact's other files.

Our two graph forms map onto genai's two cache layouts:
  - the exported graph (past in, present out, grown by concatenation) is described as it is, with
    `past_present_share_buffer` false;
  - the slot graph (GroupQueryAttention over a buffer the size of the context, rows given by `seqlens_k` and
    `total_sequence_length`) gets a small wrapper graph, `model.genai.onnx`, that computes those two from genai's
    `attention_mask` and asks for every position's logits; it shares the artifact's weight file, and genai runs it
    with `past_present_share_buffer` true, as it runs its own builder's graphs.

genai batches must be right-padded with the pad token: the slot graph takes a row's length from its mask, so right
padding leaves each row as it is alone, while left padding shifts a row's positions.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gptdeploy.config import GPTConfig
from gptdeploy.fileio import atomic_write_json
from gptdeploy.graph_contract import (
    ATTENTION_MASK,
    GRAPH_FILE,
    INPUT_IDS,
    LOGITS,
    LOGITS_TO_KEEP,
    PAST_KEY,
    PAST_VALUE,
    POSITION_IDS,
    PRESENT_KEY,
    PRESENT_VALUE,
    SEQLENS_K,
    TOTAL_SEQUENCE_LENGTH,
    input_names,
    output_names,
    slot_input_names,
)
from gptdeploy.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

GENAI_CONFIG_FILE = "genai_config.json"
GENAI_GRAPH_FILE = "model.genai.onnx"  # the slot graph's wrapper for onnxruntime-genai
MODEL_TYPE = "decoder"  # onnxruntime-genai's type for a generic decoder-only LLM with these IO names


def _template(name: str) -> str:
    """Our per-layer name ("past_key_values.{}.key") as onnxruntime-genai's printf template ("...%d.key")."""
    return name.replace("{}", "%d")


def genai_config(config: GPTConfig, tokenizer: Tokenizer, graph: str, shared_buffer: bool) -> dict:
    """The config document for `graph` (a file in the same folder); greedy search by default, like ours.
    `shared_buffer`: the graph writes the cache in place (the slot graph's wrapper) instead of returning past + new.
    """
    inputs = {"input_ids": INPUT_IDS, "attention_mask": ATTENTION_MASK, "position_ids": POSITION_IDS,
              "past_key_names": _template(PAST_KEY), "past_value_names": _template(PAST_VALUE)}  # fmt: skip
    if shared_buffer and config.positions != "learned":
        del inputs["position_ids"]  # rotary positions come from the lengths inside the graph
    return {
        "model": {
            "type": MODEL_TYPE,
            "vocab_size": config.vocab_size,
            "context_length": config.block_size,
            "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id,
            "decoder": {
                "filename": graph,
                "session_options": {"log_id": "gptdeploy", "provider_options": []},
                "head_size": config.head_dim,
                "hidden_size": config.n_embd,
                "num_attention_heads": config.n_head,
                "num_key_value_heads": config.kv_heads,
                "num_hidden_layers": config.n_layer,
                "inputs": inputs,
                "outputs": {
                    "logits": LOGITS,
                    "present_key_names": _template(PRESENT_KEY),
                    "present_value_names": _template(PRESENT_VALUE),
                },
            },
        },
        "search": {
            "do_sample": False,  # greedy, as gptdeploy's GenerationConfig defaults to
            "max_length": config.block_size,  # onnxruntime-genai counts the prompt in max_length
            "min_length": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": shared_buffer,
            "temperature": 1.0,
            "top_k": 50,
            "top_p": 1.0,
            "repetition_penalty": 1.0,
            "length_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "diversity_penalty": 0.0,
            "early_stopping": True,
        },
    }


def slot_graph_wrapper(model):
    """The slot graph (an onnx.ModelProto, weights left external) taking genai's `attention_mask` [B, T] instead of
    `seqlens_k` (each row's mask sum - 1) and `total_sequence_length` (T), with logits for every position. Changes
    `model` in place and returns it."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    derived = {SEQLENS_K, TOTAL_SEQUENCE_LENGTH, LOGITS_TO_KEEP}
    kept = [value for value in graph.input if value.name not in derived]
    mask = helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "total_sequence"])
    prefix = "genai_wrapper/"
    nodes = [
        helper.make_node("ReduceSum", [ATTENTION_MASK, f"{prefix}axis"], [f"{prefix}lengths"], keepdims=0),
        helper.make_node("Sub", [f"{prefix}lengths", f"{prefix}one"], [f"{prefix}last"]),
        helper.make_node("Cast", [f"{prefix}last"], [SEQLENS_K], to=TensorProto.INT32),
        helper.make_node("Shape", [ATTENTION_MASK], [f"{prefix}total"], start=1, end=2),
        helper.make_node("Squeeze", [f"{prefix}total"], [f"{prefix}total_scalar"]),
        helper.make_node("Cast", [f"{prefix}total_scalar"], [TOTAL_SEQUENCE_LENGTH], to=TensorProto.INT32),
        helper.make_node("Shape", [INPUT_IDS], [LOGITS_TO_KEEP], start=1, end=2),  # every position
    ]
    graph.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), f"{prefix}axis"),
                              numpy_helper.from_array(np.array(1, np.int64), f"{prefix}one")])  # fmt: skip
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *body])
    del graph.input[:]
    graph.input.extend([kept[0], mask, *kept[1:]])
    return model


def write_genai_files(folder: Path, config: GPTConfig, tokenizer: Tokenizer) -> list[Path]:
    """Write into an ONNX artifact's folder what onnxruntime-genai needs to run its `model.onnx`: the config, the
    tokenizer files and, for a slot graph, its wrapper. Returns the files written; none for a graph of neither form.
    """
    import onnx

    model = onnx.load(str(folder / GRAPH_FILE), load_external_data=False)
    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    if outputs != output_names(config.n_layer):
        return []
    if inputs == input_names(config.n_layer):
        graph, shared = GRAPH_FILE, False
        written = []
    elif inputs == slot_input_names(config.n_layer, config.positions == "learned"):
        graph, shared = GENAI_GRAPH_FILE, True
        onnx.save(slot_graph_wrapper(model), str(folder / GENAI_GRAPH_FILE))  # the weights stay in GRAPH_FILE.data
        written = [folder / GENAI_GRAPH_FILE]
    else:
        return []
    written += tokenizer.save_for_interchange(folder)
    written.append(atomic_write_json(folder / GENAI_CONFIG_FILE, genai_config(config, tokenizer, graph, shared)))
    logger.debug("wrote %s for %s", GENAI_CONFIG_FILE, folder / graph)
    return written
