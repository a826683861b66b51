"""Hugging Face `GPT2LMHeadModel` / `LlamaForCausalLM` folders -> gptdeploy checkpoints.

A folder is read the way transformers writes it (config.json, model.safetensors or sharded safetensors with an
index, tokenizer.json + tokenizer_config.json) without importing transformers. Every config field that changes what
the model computes is either mapped onto `GPTConfig` or refused with a message that names it; every tensor in the
folder must land somewhere in the model, so a checkpoint with parts we do not understand is refused, not truncated.
Pickled `pytorch_model.bin` files are never opened.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from gptdeploy.config import GPTConfig
from gptdeploy.errors import CheckpointError, ConfigError, GptDeployError, TokenizerError
from gptdeploy.tokenizer import SPECIAL_TOKENS_FILE, TOKENIZER_FILE, Tokenizer, read_special_tokens

logger = logging.getLogger(__name__)

ARCHITECTURES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama"}
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all three are GELU's tanh approximation
SAFETENSORS_FILE, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"


@dataclass(frozen=True)
class ImportResult:
    checkpoint: Path
    family: str  # gpt2 | llama
    config: GPTConfig
    parameters: int
    source_dtype: str  # the dtype the folder stored (weights are converted to float32)


def import_hf(
    folder: str | Path, checkpoint: str | Path, block_size: int | None = None, force: bool = False
) -> ImportResult:
    """Convert the Hugging Face folder into a gptdeploy checkpoint folder; returns an `ImportResult`.

    `block_size` caps the context (Llama configs often declare 128k positions, which would size every KV cache).
    The checkpoint is written to a temporary folder and renamed into place, so a failure leaves nothing behind.
    """
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.model import GPT

    folder, checkpoint = Path(folder), Path(checkpoint)
    if checkpoint.exists() and not force:
        raise CheckpointError(f"{checkpoint} already exists; pass --force to replace it or choose another -o")
    hf_config = read_hf_config(folder)
    family = hf_family(hf_config, folder)
    config = (gpt2_config if family == "gpt2" else llama_config)(hf_config)
    config = _cap_context(config, block_size)
    if config.block_size > 8192:
        logger.warning("the model declares a context of %d tokens, and runtimes size their KV cache to it; "
                       "--block-size caps it", config.block_size)  # fmt: skip
    tensors = read_safetensors(folder)
    source_dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    state = (gpt2_state_dict if family == "gpt2" else llama_state_dict)(tensors, config)
    tokenizer = hf_tokenizer(folder, config)
    model = GPT(config)
    _load_weights(model, state, folder)
    info = {"stage": "import-hf", "source": str(folder), "hf_architecture": hf_config["architectures"][0]}
    staging = checkpoint.parent / f".{checkpoint.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        save_checkpoint(staging, model.eval(), tokenizer, info)
        if checkpoint.exists():
            shutil.rmtree(checkpoint)
        os.replace(staging, checkpoint)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("imported %s (%s, %d parameters) into %s", folder, family, model.num_parameters(), checkpoint)
    return ImportResult(checkpoint, family, config, model.num_parameters(), source_dtype)


def read_hf_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not folder.is_dir():
        raise CheckpointError(f"Hugging Face folder {folder} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a Hugging Face model folder: config.json is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a model config (expected a JSON object)")
    return data


def hf_family(hf_config: dict, folder: Path) -> str:
    """gpt2 or llama, from the config's architectures; anything else is refused by name."""
    architectures = hf_config.get("architectures") or []
    supported = [ARCHITECTURES[a] for a in architectures if a in ARCHITECTURES]
    if len(architectures) != 1 or not supported:
        found = ", ".join(map(str, architectures)) or f"none (model_type {hf_config.get('model_type')!r})"
        raise ConfigError(f"{folder}: architecture {found} is not supported; gptdeploy imports "
                          f"{' and '.join(ARCHITECTURES)}")  # fmt: skip
    return supported[0]


def _require(hf_config: dict, field: str, ok: bool, supported: str) -> None:
    if not ok:
        raise ConfigError(
            f"unsupported {field}={hf_config.get(field)!r} in config.json: gptdeploy supports {supported}"
        )


def gpt2_config(hf: dict) -> GPTConfig:
    """GPTConfig for a GPT2LMHeadModel config; refuses what GPT-2's code can do and ours cannot."""
    _require(hf, "activation_function", hf.get("activation_function", "gelu_new") in GPT2_ACTIVATIONS,
             f"GELU's tanh approximation ({', '.join(GPT2_ACTIVATIONS)})")  # fmt: skip
    _require(hf, "scale_attn_weights", hf.get("scale_attn_weights", True) is True, "true (1/sqrt(head_dim))")
    _require(hf, "scale_attn_by_inverse_layer_idx", not hf.get("scale_attn_by_inverse_layer_idx", False), "false")
    _require(hf, "add_cross_attention", not hf.get("add_cross_attention", False), "false (decoder-only models)")
    dropouts = {name: float(hf.get(name, 0.1)) for name in ("resid_pdrop", "attn_pdrop", "embd_pdrop")}
    if len(set(dropouts.values())) > 1:
        logger.warning("training-only dropouts differ (%s); the checkpoint uses resid_pdrop for all", dropouts)
    return _config(
        vocab_size=hf.get("vocab_size"),
        block_size=hf.get("n_positions", hf.get("n_ctx")),
        n_layer=hf.get("n_layer"),
        n_head=hf.get("n_head"),
        n_embd=hf.get("n_embd"),
        mlp_hidden=hf.get("n_inner"),
        positions="learned",
        norm="layernorm",
        norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        mlp="gelu",
        bias=True,
        tie_embeddings=hf.get("tie_word_embeddings", True),
        dropout=dropouts["resid_pdrop"],
    )


def llama_config(hf: dict) -> GPTConfig:
    """GPTConfig for a LlamaForCausalLM config (transformers 4.x `rope_theta`/`rope_scaling` or 5.x
    `rope_parameters`); refuses rope scaling, other activations, split bias layouts and decoupled head sizes."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ConfigError(f"unsupported rope scaling {rope_type!r} in config.json: gptdeploy supports plain rotary "
                          f"positions (rope_type 'default')")  # fmt: skip
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError(f"unsupported partial_rotary_factor={rope['partial_rotary_factor']} in config.json: "
                          f"gptdeploy rotates the whole head (1.0)")  # fmt: skip
    _require(hf, "hidden_act", hf.get("hidden_act", "silu") == "silu", "silu (SwiGLU)")
    attention_bias, mlp_bias = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    if attention_bias != mlp_bias:
        raise ConfigError(f"unsupported bias layout attention_bias={attention_bias}, mlp_bias={mlp_bias}: gptdeploy "
                          f"has biases on every linear layer or on none")  # fmt: skip
    hidden, heads = hf.get("hidden_size"), hf.get("num_attention_heads")
    head_dim = hf.get("head_dim")
    if head_dim is not None and isinstance(hidden, int) and isinstance(heads, int) and head_dim * heads != hidden:
        raise ConfigError(f"unsupported head_dim={head_dim} with hidden_size={hidden} and {heads} heads: gptdeploy "
                          f"needs head_dim = hidden_size / num_attention_heads")  # fmt: skip
    return _config(
        vocab_size=hf.get("vocab_size"),
        block_size=hf.get("max_position_embeddings"),
        n_layer=hf.get("num_hidden_layers"),
        n_head=heads,
        n_kv_head=hf.get("num_key_value_heads"),
        n_embd=hidden,
        mlp_hidden=hf.get("intermediate_size"),
        positions="rope",
        rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
        norm="rmsnorm",
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        mlp="swiglu",
        bias=attention_bias,
        tie_embeddings=hf.get("tie_word_embeddings", False),
        dropout=float(hf.get("attention_dropout", 0.0)),
    )


def _config(**fields) -> GPTConfig:
    """The config, with widths that equal the defaults left at None, so a model exported from here and imported
    back has the very config it started with."""
    missing = [name for name, value in fields.items() if value is None and name not in ("mlp_hidden", "n_kv_head")]
    if missing:
        raise ConfigError(f"config.json lacks {', '.join(missing)} (as gptdeploy names them); is the folder complete?")
    config = GPTConfig(**fields)
    defaults = GPTConfig(**{**fields, "mlp_hidden": None, "n_kv_head": None})
    if config.hidden_size == defaults.hidden_size:
        fields["mlp_hidden"] = None
    if config.kv_heads == config.n_head:
        fields["n_kv_head"] = None
    return GPTConfig(**fields)


def _cap_context(config: GPTConfig, block_size: int | None) -> GPTConfig:
    if block_size is None:
        return config
    if not 0 < block_size <= config.block_size:
        raise ConfigError(f"--block-size must be in 1..{config.block_size} (the model's context), got {block_size}")
    if config.positions == "learned":  # the position table has a row per position: keep the first block_size
        raise ConfigError("--block-size applies to rotary models only; a GPT-2 position table has a fixed size")
    return GPTConfig(**{**config.to_dict(), "block_size": block_size})


def read_safetensors(folder: Path) -> dict:
    """Every tensor of the folder's safetensors file(s), by name; pickled weights are refused, not opened."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{index} is corrupt: {error}") from error
    elif (folder / SAFETENSORS_FILE).is_file():
        files = [SAFETENSORS_FILE]
    else:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        hint = (f" (found {', '.join(pickled)}: pickled weights are never loaded; re-save the model with "
                "save_pretrained(..., safe_serialization=True))") if pickled else ""  # fmt: skip
        raise CheckpointError(f"{folder} has no {SAFETENSORS_FILE} or {SAFETENSORS_INDEX}{hint}")
    tensors = {}
    for name in files:
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"{folder} is incomplete: {name} (named in {SAFETENSORS_INDEX}) is missing")
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read weights {path}: {error}".splitlines()[0]) from error
    if not tensors:
        raise CheckpointError(f"{folder}: the safetensors files hold no tensors")
    return tensors


class _Tensors:
    """The folder's tensors, taken by name; whatever is never taken is reported as not understood."""

    def __init__(self, tensors: dict, prefix: str, ignored: tuple[str, ...] = ()):
        self.tensors = {name.removeprefix(prefix): tensor for name, tensor in tensors.items()
                        if not name.endswith(ignored)}  # fmt: skip

    def take(self, name: str):
        if name not in self.tensors:
            raise CheckpointError(f"weights lack tensor {name!r}; the files do not match config.json")
        return self.tensors.pop(name).float()

    def take_if(self, name: str, present: bool):
        return self.take(name) if present else None

    def finish(self) -> None:
        if self.tensors:
            left = sorted(self.tensors)
            raise CheckpointError(f"weights hold tensors gptdeploy's model has no place for: {', '.join(left[:5])}"
                                  f"{' ...' if len(left) > 5 else ''}")  # fmt: skip


def gpt2_state_dict(tensors: dict, config: GPTConfig) -> dict:
    """GPT-2 names map one to one; its Conv1D layers store weights (in, out), so they are transposed."""
    prefix = "transformer." if any(name.startswith("transformer.") for name in tensors) else ""
    source = _Tensors(tensors, prefix, ignored=(".attn.bias", ".attn.masked_bias"))  # causal-mask buffers
    state = {"wte.weight": source.take("wte.weight"), "wpe.weight": source.take("wpe.weight")}
    for i in range(config.n_layer):
        for norm in ("ln_1", "ln_2"):
            state[f"h.{i}.{norm}.weight"] = source.take(f"h.{i}.{norm}.weight")
            state[f"h.{i}.{norm}.bias"] = source.take(f"h.{i}.{norm}.bias")
        for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            state[f"h.{i}.{layer}.weight"] = source.take(f"h.{i}.{layer}.weight").t().contiguous()
            state[f"h.{i}.{layer}.bias"] = source.take(f"h.{i}.{layer}.bias")
    state["ln_f.weight"], state["ln_f.bias"] = source.take("ln_f.weight"), source.take("ln_f.bias")
    _take_lm_head(source, state, config)
    return state


def llama_state_dict(tensors: dict, config: GPTConfig) -> dict:
    """Llama keeps q/k/v and gate/up in separate matrices; ours concatenates them ([q; k; v], [gate; up]).

    Both use the half-split rotary layout, so q and k rows need no permutation.
    """
    import torch

    source = _Tensors(tensors, "", ignored=(".rotary_emb.inv_freq",))  # a buffer older versions saved
    bias = config.bias
    state = {"wte.weight": source.take("model.embed_tokens.weight")}
    for i in range(config.n_layer):
        layer = f"model.layers.{i}"
        attn, mlp = f"{layer}.self_attn", f"{layer}.mlp"
        state[f"h.{i}.ln_1.weight"] = source.take(f"{layer}.input_layernorm.weight")
        state[f"h.{i}.ln_2.weight"] = source.take(f"{layer}.post_attention_layernorm.weight")
        state[f"h.{i}.attn.c_attn.weight"] = torch.cat([source.take(f"{attn}.{p}_proj.weight") for p in "qkv"])
        state[f"h.{i}.attn.c_proj.weight"] = source.take(f"{attn}.o_proj.weight")
        state[f"h.{i}.mlp.c_fc.weight"] = torch.cat([source.take(f"{mlp}.{p}_proj.weight") for p in ("gate", "up")])
        state[f"h.{i}.mlp.c_proj.weight"] = source.take(f"{mlp}.down_proj.weight")
        if bias:
            state[f"h.{i}.attn.c_attn.bias"] = torch.cat([source.take(f"{attn}.{p}_proj.bias") for p in "qkv"])
            state[f"h.{i}.attn.c_proj.bias"] = source.take(f"{attn}.o_proj.bias")
            state[f"h.{i}.mlp.c_fc.bias"] = torch.cat([source.take(f"{mlp}.{p}_proj.bias") for p in ("gate", "up")])
            state[f"h.{i}.mlp.c_proj.bias"] = source.take(f"{mlp}.down_proj.bias")
    state["ln_f.weight"] = source.take("model.norm.weight")
    _take_lm_head(source, state, config)
    return state


def _take_lm_head(source: _Tensors, state: dict, config: GPTConfig) -> None:
    """The output matrix (its own unless tied to the embedding), then check that nothing is left over."""
    if config.tie_embeddings:
        source.tensors.pop("lm_head.weight", None)  # some tied checkpoints store the shared matrix twice
        state["lm_head.weight"] = state["wte.weight"]
    else:
        state["lm_head.weight"] = source.take("lm_head.weight")
    source.finish()


def _load_weights(model, state: dict, folder: Path) -> None:
    expected = model.state_dict()
    for name, tensor in state.items():
        if name in expected and expected[name].shape != tensor.shape:
            raise CheckpointError(f"{folder}: tensor for {name} has shape {tuple(tensor.shape)}, the config implies "
                                  f"{tuple(expected[name].shape)}")  # fmt: skip
    model.load_state_dict(state, strict=True)


def hf_tokenizer(folder: Path, config: GPTConfig) -> Tokenizer:
    """The folder's `tokenizer.json`, with bos / eos / pad from its `tokenizer_config.json` (or config.json ids)."""
    if not (folder / TOKENIZER_FILE).is_file():
        raise TokenizerError(f"{folder} has no {TOKENIZER_FILE}; write one with transformers: "
                             f"AutoTokenizer.from_pretrained(FOLDER).save_pretrained(FOLDER)")  # fmt: skip
    from tokenizers import Tokenizer as BackendTokenizer

    try:
        backend = BackendTokenizer.from_file(str(folder / TOKENIZER_FILE))
    except Exception as error:  # the Rust library raises plain Exceptions for malformed files
        raise TokenizerError(f"cannot read tokenizer {folder / TOKENIZER_FILE}: {error}") from error
    roles = read_special_tokens(folder / SPECIAL_TOKENS_FILE) or _roles_from_ids(folder, backend)
    try:
        tokenizer = Tokenizer(backend, **roles)
    except GptDeployError as error:
        raise TokenizerError(f"{folder}: {error}") from error
    if tokenizer.vocab_size > config.vocab_size:
        raise TokenizerError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary "
                             f"only {config.vocab_size}")  # fmt: skip
    return tokenizer


def _roles_from_ids(folder: Path, backend) -> dict[str, str]:
    """Special tokens from config.json's bos/eos/pad ids, for folders without a tokenizer_config.json."""
    hf = read_hf_config(folder)
    roles = {}
    for role in ("bos", "eos", "pad"):
        token_id = hf.get(f"{role}_token_id")
        if isinstance(token_id, list):  # several stop tokens (Llama 3): the first one ends text
            token_id = token_id[0] if token_id else None
        text = backend.id_to_token(token_id) if isinstance(token_id, int) else None
        if text is not None:
            roles[role] = text
    if "eos" not in roles:
        raise TokenizerError(f"{folder} names no eos token (tokenizer_config.json eos_token or config.json "
                             f"eos_token_id); add one so generation knows where text ends")  # fmt: skip
    return {"bos": roles.get("bos", roles["eos"]), "eos": roles["eos"], "pad": roles.get("pad", roles["eos"])}
