"""gptdeploy checkpoints -> Hugging Face `GPT2LMHeadModel` / `LlamaForCausalLM` folders.

The inverse of `hf_import`: config.json, generation_config.json, model.safetensors and the tokenizer files, written so
`transformers` loads the model with `AutoModelForCausalLM.from_pretrained` and other tools built on that layout
(onnxruntime-genai's model builder, llama.cpp's converter) read it. A config maps onto GPT-2 or Llama only when every
option agrees; otherwise the export is refused with the options that stand in the way.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from gptdeploy.config import GPTConfig
from gptdeploy.errors import ConfigError, ExportError
from gptdeploy.fileio import atomic_write_json, atomic_write_text
from gptdeploy.tokenizer import SPECIAL_TOKENS_FILE, TOKENIZER_FILE, Tokenizer

logger = logging.getLogger(__name__)

FAMILIES = ("gpt2", "llama")
# What each family fixes: (field, required value, how to say it). bias is free for Llama (attention_bias = mlp_bias).
_REQUIREMENTS = {
    "gpt2": [("positions", "learned", "learned positions"), ("norm", "layernorm", "LayerNorm"),
             ("mlp", "gelu", "a GELU MLP"), ("bias", True, "biases")],
    "llama": [("positions", "rope", "rotary positions"), ("norm", "rmsnorm", "RMSNorm"),
              ("mlp", "swiglu", "a SwiGLU MLP")],
}  # fmt: skip


@dataclass(frozen=True)
class HfExportResult:
    folder: Path
    family: str
    files: tuple[str, ...]


def family_mismatches(config: GPTConfig, family: str) -> list[str]:
    """The options of `config` that the Hugging Face `family` cannot express (empty when it maps)."""
    problems = [f"{name}={getattr(config, name)!r} (it needs {what})"
                for name, value, what in _REQUIREMENTS[family] if getattr(config, name) != value]  # fmt: skip
    if family == "gpt2" and config.kv_heads != config.n_head:
        problems.append(f"n_kv_head={config.n_kv_head} (GPT-2 has no grouped-query attention)")
    return problems


def choose_family(config: GPTConfig, family: str | None = None) -> str:
    """The requested family if the config maps onto it, else the one it maps onto; ConfigError naming why not."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"unknown Hugging Face family {family!r}; choose {' or '.join(FAMILIES)}")
    for candidate in [family] if family else FAMILIES:
        if not family_mismatches(config, candidate):
            return candidate
    reasons = "; ".join(f"{f}: {', '.join(family_mismatches(config, f))}" for f in ([family] if family else FAMILIES))
    raise ConfigError(f"this model maps onto no Hugging Face architecture gptdeploy exports ({reasons})")


def gpt2_hf_config(config: GPTConfig) -> dict:
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.block_size,
        "n_embd": config.n_embd,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.mlp_hidden,  # None = 4 * n_embd in both
        "activation_function": "gelu_new",
        "layer_norm_epsilon": config.norm_eps,
        "resid_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "embd_pdrop": 0.0,  # the reference model has no embedding dropout
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": config.tie_embeddings,
    }


def llama_hf_config(config: GPTConfig) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd,
        "intermediate_size": config.hidden_size,
        "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": config.block_size,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,  # transformers 4.x reads this ...
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},  # ... and 5.x this
        "attention_bias": config.bias,
        "mlp_bias": config.bias,
        "attention_dropout": config.dropout,
        "pretraining_tp": 1,
        "tie_word_embeddings": config.tie_embeddings,
    }


def gpt2_tensors(state: dict, config: GPTConfig) -> dict:
    """Our names are GPT-2's under `transformer.`; its Conv1D layers want (in, out) weights."""
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    tensors = {}
    for name, tensor in state.items():
        if name == "lm_head.weight":
            continue
        tensors[f"transformer.{name}"] = tensor.t() if name.endswith(conv1d) else tensor
    if not config.tie_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    return tensors


def llama_tensors(state: dict, config: GPTConfig) -> dict:
    """Split our fused [q; k; v] and [gate; up] matrices into Llama's separate projections."""
    q_width, kv_width = config.n_head * config.head_dim, config.kv_heads * config.head_dim
    tensors = {"model.embed_tokens.weight": state["wte.weight"], "model.norm.weight": state["ln_f.weight"]}
    kinds = ("weight", "bias") if config.bias else ("weight",)
    for i in range(config.n_layer):
        layer, ours = f"model.layers.{i}", f"h.{i}"
        tensors[f"{layer}.input_layernorm.weight"] = state[f"{ours}.ln_1.weight"]
        tensors[f"{layer}.post_attention_layernorm.weight"] = state[f"{ours}.ln_2.weight"]
        for kind in kinds:
            q, k, v = state[f"{ours}.attn.c_attn.{kind}"].split([q_width, kv_width, kv_width])
            gate, up = state[f"{ours}.mlp.c_fc.{kind}"].chunk(2)
            parts = {"self_attn.q_proj": q, "self_attn.k_proj": k, "self_attn.v_proj": v,
                     "self_attn.o_proj": state[f"{ours}.attn.c_proj.{kind}"], "mlp.gate_proj": gate,
                     "mlp.up_proj": up, "mlp.down_proj": state[f"{ours}.mlp.c_proj.{kind}"]}  # fmt: skip
            tensors.update({f"{layer}.{name}.{kind}": tensor for name, tensor in parts.items()})
    if not config.tie_embeddings:
        tensors["lm_head.weight"] = state["lm_head.weight"]
    return tensors


def hf_tokenizer_json(tokenizer: Tokenizer) -> str:
    """tokenizer.json for transformers.

    A tokenizer without a post-processor (gptdeploy's own) gets one that puts bos first, so transformers'
    `tokenizer(text)` gives the ids gptdeploy feeds the model; an imported one keeps the post-processor it came with.
    """
    from tokenizers import Tokenizer as BackendTokenizer
    from tokenizers import processors

    if tokenizer.backend.post_processor is not None:
        return tokenizer.backend.to_str()
    backend = BackendTokenizer.from_str(tokenizer.backend.to_str())  # a copy: the caller's tokenizer is unchanged
    bos = tokenizer.special_tokens["bos"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, tokenizer.bos_id)]
    )
    return backend.to_str()


def export_hf(
    checkpoint: str | Path, folder: str | Path, family: str | None = None, force: bool = False
) -> HfExportResult:
    """Write the checkpoint as a Hugging Face folder of `family` (default: the one it maps onto).

    Written to a temporary folder and renamed into place, so a failure never leaves half a folder (nor loses an
    older one).
    """
    from safetensors.torch import save_file

    from gptdeploy.checkpoint import load_checkpoint

    folder = Path(folder)
    if folder.exists() and not force:
        raise ExportError(f"{folder} already exists; pass --force to replace it or choose another -o")
    loaded = load_checkpoint(checkpoint)
    config, tokenizer = loaded.config, loaded.tokenizer
    family = choose_family(config, family)
    hf_config = (gpt2_hf_config if family == "gpt2" else llama_hf_config)(config)
    special = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    hf_config.update(special, dtype="float32")
    state = {name: tensor.detach().float().contiguous() for name, tensor in loaded.model.state_dict().items()}
    tensors = (gpt2_tensors if family == "gpt2" else llama_tensors)(state, config)
    tensors = {name: tensor.contiguous().clone() for name, tensor in tensors.items()}
    staging = folder.parent / f".{folder.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        atomic_write_json(staging / "config.json", hf_config)
        atomic_write_json(staging / "generation_config.json", {**special, "do_sample": False})
        atomic_write_text(staging / TOKENIZER_FILE, hf_tokenizer_json(tokenizer))
        atomic_write_json(staging / SPECIAL_TOKENS_FILE, tokenizer.special_tokens_config())
        files = tuple(sorted(p.name for p in staging.iterdir()))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %s as a Hugging Face %s folder to %s", checkpoint, family, folder)
    return HfExportResult(folder, family, files)
