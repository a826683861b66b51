"""`genai_config.json` for a bundle, so onnxruntime-genai runs the bundle's decoder graphs as they are.

onnxruntime-genai treats a folder as a model when it holds `genai_config.json` (model type, the decoder graph's file
and IO names with per-layer `%d` templates, head counts, context length, special token ids, search defaults) and,
for its tokenizer, `tokenizer.json` + `tokenizer_config.json`. Our graphs already use the IO names its model builder
uses, with a past-in / present-out cache that grows by concatenation (`past_present_share_buffer` false), so the
config only describes them. The config names one graph: the bundle's fp32 one by default; another artifact's graph
is chosen by writing the config for it, or at load time with `onnxruntime_genai.Config.overlay`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gptdeploy.bundle import load_bundle
from gptdeploy.bundle_write import rehash_shared_files
from gptdeploy.config import GPTConfig
from gptdeploy.errors import ExportError
from gptdeploy.fileio import atomic_write_json
from gptdeploy.graph_contract import (
    ATTENTION_MASK,
    INPUT_IDS,
    LOGITS,
    PAST_KEY,
    PAST_VALUE,
    POSITION_IDS,
    PRESENT_KEY,
    PRESENT_VALUE,
    input_names,
    output_names,
)
from gptdeploy.tokenizer import SPECIAL_TOKENS_FILE, TOKENIZER_FILE, Tokenizer

logger = logging.getLogger(__name__)

GENAI_CONFIG_FILE = "genai_config.json"
MODEL_TYPE = "decoder"  # onnxruntime-genai's type for a generic decoder-only LLM with these IO names


def _template(name: str) -> str:
    """Our per-layer name ("past_key_values.{}.key") as onnxruntime-genai's printf template ("...%d.key")."""
    return name.replace("{}", "%d")


def genai_config(config: GPTConfig, tokenizer: Tokenizer, graph: str) -> dict:
    """The config document for `graph` (a path relative to the bundle); greedy search by default, like ours."""
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
                "inputs": {
                    "input_ids": INPUT_IDS,
                    "attention_mask": ATTENTION_MASK,
                    "position_ids": POSITION_IDS,
                    "past_key_names": _template(PAST_KEY),
                    "past_value_names": _template(PAST_VALUE),
                },
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
            "past_present_share_buffer": False,  # our graphs return past + new, they do not write in place
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


def check_graph_io(graph_path: Path, n_layer: int) -> None:
    """The graph must have exactly the IO names the config promises, else onnxruntime-genai fails at run time."""
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    inputs = [value.name for value in model.graph.input]
    outputs = [value.name for value in model.graph.output]
    if sorted(inputs) != sorted(input_names(n_layer)) or sorted(outputs) != sorted(output_names(n_layer)):
        raise ExportError(f"{graph_path} does not have gptdeploy's decoder IO names (inputs {inputs[:4]}..., outputs "
                          f"{outputs[:2]}...); onnxruntime-genai could not feed it")  # fmt: skip


def write_genai_config(bundle_dir: str | Path, config: GPTConfig, tokenizer: Tokenizer, graph: str) -> list[Path]:
    """Write genai_config.json (for `graph`, relative to the bundle) and the tokenizer_config.json that
    onnxruntime-genai's tokenizer needs next to tokenizer.json; returns the files written."""
    bundle_dir = Path(bundle_dir)
    if not (bundle_dir / graph).is_file():
        raise ExportError(f"{bundle_dir} has no graph {graph} to describe in {GENAI_CONFIG_FILE}")
    if not (bundle_dir / TOKENIZER_FILE).is_file():
        raise ExportError(f"{bundle_dir} has no {TOKENIZER_FILE}; onnxruntime-genai needs it next to the config")
    check_graph_io(bundle_dir / graph, config.n_layer)
    written = [
        atomic_write_json(bundle_dir / SPECIAL_TOKENS_FILE, tokenizer.special_tokens_config()),
        atomic_write_json(bundle_dir / GENAI_CONFIG_FILE, genai_config(config, tokenizer, graph)),
    ]
    logger.info("wrote %s for %s", GENAI_CONFIG_FILE, graph)
    return written


def write_bundle_genai_config(bundle_dir: str | Path, artifact: str = "onnx-fp32") -> list[Path]:
    """The same for a finished bundle: its config, its tokenizer and the graph of the artifact named `artifact`."""
    bundle = load_bundle(bundle_dir)
    chosen = next((a for a in bundle.artifacts if a.name == artifact), None)
    if chosen is None or chosen.kind != "onnx":
        onnx_names = ", ".join(a.name for a in bundle.artifacts if a.kind == "onnx") or "none"
        raise ExportError(f"{bundle_dir} has no ONNX artifact {artifact!r} (it has: {onnx_names})")
    tokenizer = Tokenizer.load(bundle.file(TOKENIZER_FILE))
    written = write_genai_config(bundle.path, bundle.config, tokenizer, chosen.path)
    rehash_shared_files(bundle.path)
    return written
