"""Hugging Face `config.json` <-> `GPTConfig`, for every architecture gptdeploy imports and exports.

A config is read the way transformers reads it, without importing transformers: a key the file omits takes the
default of transformers' config class for that architecture, and the rotary settings resolve exactly as transformers
5.x resolves them (`rope_scaling` before `rope_parameters`, a theta inside the dict before the top-level
`rope_theta`, ...). Where the file also carries the keys transformers 4.x reads and 4.x would compute another rotation,
the file is ambiguous and refused. Every setting that changes what the model computes either maps onto `GPTConfig`
or is refused by name; nothing is approximated.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gptdeploy.config import GPTConfig
from gptdeploy.errors import ConfigError

logger = logging.getLogger(__name__)

ARCHITECTURES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral",
                 "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "Phi3ForCausalLM": "phi3"}  # fmt: skip
FAMILIES = tuple(ARCHITECTURES.values())
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # all three are GELU's tanh approximation
DEFAULT_THETA = 10000.0  # transformers' rope_theta when a file names none, for every family here
# transformers 5.x config-class defaults of the keys read below, for files that omit them
_DEFAULTS = {
    "llama": dict(max_position_embeddings=2048, num_key_value_heads=None, head_dim=None, rms_norm_eps=1e-6,
                  tie_word_embeddings=False),
    "mistral": dict(max_position_embeddings=4096 * 32, num_key_value_heads=8, head_dim=None, rms_norm_eps=1e-6,
                    tie_word_embeddings=False, sliding_window=4096),
    "qwen2": dict(max_position_embeddings=32768, num_key_value_heads=32, head_dim=None, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, use_sliding_window=False, sliding_window=4096, max_window_layers=28),
    "qwen3": dict(max_position_embeddings=32768, num_key_value_heads=32, head_dim=128, rms_norm_eps=1e-6,
                  tie_word_embeddings=False, use_sliding_window=False, sliding_window=4096, max_window_layers=28),
    "phi3": dict(max_position_embeddings=4096, num_key_value_heads=None, head_dim=None, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, sliding_window=None),
}  # fmt: skip


def hf_family(hf: dict, where: object) -> str:
    """The family of a config.json from its architectures; anything else is refused by name."""
    architectures = hf.get("architectures") or []
    supported = [ARCHITECTURES[a] for a in architectures if a in ARCHITECTURES]
    if len(architectures) != 1 or not supported:
        found = ", ".join(map(str, architectures)) or f"none (model_type {hf.get('model_type')!r})"
        raise ConfigError(f"{where}: architecture {found} is not supported; gptdeploy imports "
                          f"{', '.join(ARCHITECTURES)}")  # fmt: skip
    return supported[0]


def hf_to_config(hf: dict, family: str, block_size: int | None = None) -> GPTConfig:
    """The GPTConfig of a config.json of `family`; `block_size` caps the context (rotary models only)."""
    config = gpt2_config(hf) if family == "gpt2" else rotary_config(hf, family)
    config = _cap_context(config, block_size)
    window = sliding_window(hf, family) if family != "gpt2" else None
    if window is not None and config.block_size > window:
        raise ConfigError(f"this {family} model attends within a sliding window of {window} tokens and gptdeploy's "
                          f"model attends to its whole context ({config.block_size}); pass --block-size {window} or "
                          f"less, where the two are the same")  # fmt: skip
    return config


def _require(hf: dict, field: str, ok: bool, supported: str) -> None:
    if not ok:
        raise ConfigError(f"unsupported {field}={hf.get(field)!r} in config.json: gptdeploy supports {supported}")


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


def rotary_config(hf: dict, family: str) -> GPTConfig:
    """GPTConfig for the Llama-style families (rotary positions, RMSNorm, SwiGLU) and their differences: Qwen2's
    q/k/v biases, Qwen3's per-head q/k RMSNorm, Mistral's and Phi-3's sliding window (checked by the caller)."""
    defaults = _DEFAULTS[family]

    def read(key: str):
        value = hf.get(key, defaults.get(key))
        return defaults.get(key) if value is None and key in ("head_dim", "num_key_value_heads") else value

    _require(hf, "hidden_act", hf.get("hidden_act", "silu") == "silu", "silu (SwiGLU)")
    bias, qkv_bias = _biases(hf, family)
    layer_types(hf, family)  # refuses attention kinds other than full and sliding
    return _config(
        vocab_size=hf.get("vocab_size"),
        block_size=read("max_position_embeddings"),
        n_layer=hf.get("num_hidden_layers"),
        n_head=hf.get("num_attention_heads"),
        n_kv_head=read("num_key_value_heads"),
        n_embd=hf.get("hidden_size"),
        head_size=read("head_dim"),  # Qwen2's and Phi-3's configs have no such field, yet transformers reads it
        mlp_hidden=hf.get("intermediate_size"),
        positions="rope",
        rope_theta=rope_theta(hf, family),
        norm="rmsnorm",
        norm_eps=float(read("rms_norm_eps")),
        qk_norm=family == "qwen3",
        mlp="swiglu",
        bias=bias,
        qkv_bias=qkv_bias,
        tie_embeddings=read("tie_word_embeddings"),
        dropout=float(hf.get("attention_dropout", 0.0)),
    )


def _biases(hf: dict, family: str) -> tuple[bool, bool]:
    """(bias, qkv_bias): which linear layers of the family carry biases, as GPTConfig can say it."""
    if family == "qwen2":  # q/k/v always have biases, o_proj and the MLP never
        return False, True
    if family == "llama":
        attention, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
    elif family == "qwen3":  # attention_bias puts biases on q/k/v and o_proj, never on the MLP
        attention, mlp = bool(hf.get("attention_bias", False)), False
    else:  # mistral, phi3: no biases at all
        return False, False
    if attention != mlp:
        raise ConfigError(f"unsupported bias layout attention_bias={attention}, mlp_bias={mlp}: gptdeploy has biases "
                          f"on every linear layer or on none (or, as Qwen2, on q/k/v alone)")  # fmt: skip
    return attention, False


def sliding_window(hf: dict, family: str) -> int | None:
    """The attention window of the family's layers (None: every layer attends to the whole context)."""
    defaults = _DEFAULTS[family]
    window = hf.get("sliding_window", defaults.get("sliding_window"))
    if family in ("qwen2", "qwen3"):  # the window exists only with use_sliding_window, on "sliding_attention" layers
        if not hf.get("use_sliding_window", False):
            return None
        if "sliding_attention" not in layer_types(hf, family):
            return None
    return window


def layer_types(hf: dict, family: str) -> list[str]:
    """Qwen's per-layer attention kinds: the file's `layer_types`, or the ones transformers derives from
    use_sliding_window and max_window_layers."""
    if family not in ("qwen2", "qwen3"):
        return []
    types = hf.get("layer_types")
    if types is None:
        defaults = _DEFAULTS[family]
        windowed = hf.get("use_sliding_window", False) and hf.get("sliding_window", defaults["sliding_window"])
        start = hf.get("max_window_layers", defaults["max_window_layers"])
        types = ["sliding_attention" if windowed and i >= start else "full_attention"
                 for i in range(hf.get("num_hidden_layers") or 0)]  # fmt: skip
    unknown = sorted(set(types) - {"full_attention", "sliding_attention"})
    if unknown:
        raise ConfigError(f"unsupported layer_types {unknown} in config.json: gptdeploy supports full_attention "
                          f"(and sliding_attention within --block-size)")  # fmt: skip
    return list(types)


# --- rotary settings --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rope:
    """One resolved rotary setting: what the model computes, whichever keys the file spelled it with."""

    rope_type: str
    theta: object  # a number, unless the file is broken
    partial_rotary_factor: object


def rope_theta(hf: dict, family: str) -> float:
    """The rotary base of a config.json, as transformers 5.x resolves it; refuses scaling, partial rotation and
    files that transformers 4.x reads differently."""
    reading = _rope_as_transformers_5(hf, family)
    legacy = _rope_as_transformers_4(hf, family)
    for rope, version in ((reading, "5.x"), (legacy, "4.x")):
        if rope is None:
            continue
        if rope.rope_type != "default":
            raise ConfigError(f"unsupported rope scaling {rope.rope_type!r} in config.json (as transformers "
                              f"{version} reads it): gptdeploy supports plain rotary positions (rope_type "
                              "'default')")  # fmt: skip
        if rope.partial_rotary_factor != 1.0:
            raise ConfigError(f"unsupported partial_rotary_factor={rope.partial_rotary_factor} in config.json: "
                              f"gptdeploy rotates the whole head (1.0)")  # fmt: skip
    if legacy is not None and legacy != reading:
        raise ConfigError(f"config.json is ambiguous: transformers 5.x reads rope_theta {reading.theta} and 4.x reads "
                          f"{legacy.theta}; make rope_parameters and the top-level rope_theta agree")  # fmt: skip
    if isinstance(reading.theta, bool) or not isinstance(reading.theta, int | float) or reading.theta <= 0:
        raise ConfigError(f"rope_theta must be a positive number in config.json, got {reading.theta!r}")
    return float(reading.theta)


def _rope_as_transformers_5(hf: dict, family: str) -> Rope:
    """transformers 5.x: the dict is `rope_scaling or rope_parameters`; a theta or partial factor it lacks comes from
    the top level; `type` is the old name of `rope_type`. Qwen's dict may hold one setting per layer type."""
    params = hf.get("rope_scaling") or hf.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"rope settings in config.json must be an object, got {params!r}")
    nested = [key for key in params if key in layer_types(hf, family)]
    settings = [params[key] for key in nested if params[key] is not None] if nested else [params]
    top_partial = hf.get("partial_rotary_factor", 1.0 if family == "phi3" else None)
    resolved = set()
    for setting in settings:
        rope_type = setting.get("rope_type", setting.get("type", "default"))
        if family == "phi3" and rope_type in ("su", "yarn"):  # Phi-3's config renames both to longrope
            rope_type = "longrope"
        partial = setting.get("partial_rotary_factor", top_partial)
        resolved.add(Rope(rope_type, setting.get("rope_theta", hf.get("rope_theta", DEFAULT_THETA)),
                          1.0 if partial is None else partial))  # fmt: skip
    if len(resolved) > 1:
        raise ConfigError(f"config.json gives each layer type its own rotary settings ({', '.join(nested)}); "
                          f"gptdeploy's model has one for all layers")  # fmt: skip
    return resolved.pop()


def _rope_as_transformers_4(hf: dict, family: str) -> Rope | None:
    """transformers 4.x, when the file has the keys it reads (top-level rope_theta, rope_scaling): the type from
    rope_scaling (its `type` overriding `rope_type`), the theta and partial factor from the top level only."""
    scaling = hf.get("rope_scaling")
    if "rope_theta" not in hf and not scaling:
        return None
    rope_type = "default"
    if isinstance(scaling, dict) and scaling:
        rope_type = scaling.get("type", scaling.get("rope_type", "default"))
        if family == "phi3" and rope_type in ("su", "yarn"):
            rope_type = "longrope"
    return Rope(rope_type, hf.get("rope_theta", DEFAULT_THETA), hf.get("partial_rotary_factor", 1.0))


# --- shared -----------------------------------------------------------------------------------------------------


def _config(**fields) -> GPTConfig:
    """The config, with widths that equal the defaults left at None, so a model exported from here and imported
    back has the very config it started with."""
    optional = ("mlp_hidden", "n_kv_head", "head_size")
    missing = [name for name, value in fields.items() if value is None and name not in optional]
    if missing:
        raise ConfigError(f"config.json lacks {', '.join(missing)} (as gptdeploy names them); is the folder complete?")
    config = GPTConfig(**fields)
    defaults = GPTConfig(**{**fields, **dict.fromkeys(optional)}) if _divides(fields) else None
    if defaults is not None and config.hidden_size == defaults.hidden_size:
        fields["mlp_hidden"] = None
    if config.kv_heads == config.n_head:
        fields["n_kv_head"] = None
    if _divides(fields) and config.head_dim * config.n_head == config.n_embd:
        fields["head_size"] = None
    return GPTConfig(**fields)


def _divides(fields: dict) -> bool:
    return fields["n_embd"] % fields["n_head"] == 0


def _cap_context(config: GPTConfig, block_size: int | None) -> GPTConfig:
    if block_size is None:
        return config
    if not 0 < block_size <= config.block_size:
        raise ConfigError(f"--block-size must be in 1..{config.block_size} (the model's context), got {block_size}")
    if config.positions == "learned":  # the position table has a row per position: keep the first block_size
        raise ConfigError("--block-size applies to rotary models only; a GPT-2 position table has a fixed size")
    return GPTConfig(**{**config.to_dict(), "block_size": block_size})


# --- GPTConfig -> config.json ---------------------------------------------------------------------------------

_LLAMA_STYLE = [("positions", "rope", "rotary positions"), ("norm", "rmsnorm", "RMSNorm"), ("mlp", "swiglu", "SwiGLU")]
# What each family fixes: (field, required value, how to say it). Llama's bias is free (attention_bias = mlp_bias).
_REQUIREMENTS = {
    "gpt2": [("positions", "learned", "learned positions"), ("norm", "layernorm", "LayerNorm"),
             ("mlp", "gelu", "a GELU MLP"), ("bias", True, "biases"), ("head_size", None, "n_embd / n_head"),
             ("qkv_bias", False, "no separate q/k/v biases"), ("qk_norm", False, "no q/k norm")],
    "llama": [*_LLAMA_STYLE, ("qkv_bias", False, "no q/k/v-only biases"), ("qk_norm", False, "no q/k norm")],
    "mistral": [*_LLAMA_STYLE, ("bias", False, "no biases"), ("qkv_bias", False, "no biases"),
                ("qk_norm", False, "no q/k norm")],
    "qwen2": [*_LLAMA_STYLE, ("bias", False, "biases on q/k/v alone"), ("qkv_bias", True, "q/k/v biases"),
              ("qk_norm", False, "no q/k norm"), ("head_size", None, "n_embd / n_head")],
    "qwen3": [*_LLAMA_STYLE, ("bias", False, "no biases"), ("qkv_bias", False, "no biases"),
              ("qk_norm", True, "q/k RMSNorm")],
    "phi3": [*_LLAMA_STYLE, ("bias", False, "no biases"), ("qkv_bias", False, "no biases"),
             ("qk_norm", False, "no q/k norm"), ("head_size", None, "n_embd / n_head")],
}  # fmt: skip
EXPORT_ORDER = ("gpt2", "llama", "qwen2", "qwen3", "mistral", "phi3")  # the default family is the first that fits


def family_mismatches(config: GPTConfig, family: str) -> list[str]:
    """The options of `config` that the Hugging Face `family` cannot express (empty when it maps)."""
    problems = [f"{name}={getattr(config, name)!r} (it needs {what})"
                for name, value, what in _REQUIREMENTS[family] if getattr(config, name) != value]  # fmt: skip
    if family == "gpt2" and config.kv_heads != config.n_head:
        problems.append(f"n_kv_head={config.n_kv_head} (GPT-2 has no grouped-query attention)")
    if not config.causal:
        problems.append("causal=False (an MLM encoder; every family written is a causal decoder)")
    if config.num_labels:
        problems.append(f"num_labels={config.num_labels} (a classification head has no place in a causal LM)")
    return problems


def choose_family(
    config: GPTConfig,
    family: str | None = None,
    preferred: str | None = None,
    families: tuple[str, ...] = EXPORT_ORDER,
    kind: str = "Hugging Face architecture",
) -> str:
    """The requested family if the config maps onto it; else `preferred` (the family it was imported from) or the
    first of `families` it maps onto. ConfigError naming the options in the way."""
    if family is not None and family not in families:
        raise ConfigError(f"unknown {kind} {family!r}; choose one of {', '.join(families)}")
    candidates = [family] if family else [*([preferred] if preferred in families else []), *families]
    for candidate in candidates:
        if not family_mismatches(config, candidate):
            return candidate
    shown = [family] if family else ["gpt2", "llama"]
    reasons = "; ".join(f"{f}: {', '.join(family_mismatches(config, f))}" for f in shown)
    raise ConfigError(f"this model maps onto no {kind} gptdeploy writes ({reasons})")


def config_to_hf(config: GPTConfig, family: str) -> dict:
    """config.json for `family` (checked with `family_mismatches` first), readable by transformers 4.x and 5.x."""
    if family == "gpt2":
        return {
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": config.vocab_size,
            "n_positions": config.block_size, "n_embd": config.n_embd, "n_layer": config.n_layer,
            "n_head": config.n_head, "n_inner": config.mlp_hidden,  # None = 4 * n_embd in both
            "activation_function": "gelu_new", "layer_norm_epsilon": config.norm_eps, "resid_pdrop": config.dropout,
            "attn_pdrop": config.dropout, "embd_pdrop": 0.0,  # the reference model has no embedding dropout
            "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
            "tie_word_embeddings": config.tie_embeddings,
        }  # fmt: skip
    architecture = next(name for name, f in ARCHITECTURES.items() if f == family)
    hf = {
        "architectures": [architecture], "model_type": family, "vocab_size": config.vocab_size,
        "hidden_size": config.n_embd, "intermediate_size": config.hidden_size, "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head, "num_key_value_heads": config.kv_heads, "hidden_act": "silu",
        "max_position_embeddings": config.block_size, "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,  # transformers 4.x reads this ...
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},  # ... and 5.x this
        "attention_dropout": config.dropout, "tie_word_embeddings": config.tie_embeddings,
    }  # fmt: skip
    if family in ("llama", "mistral", "qwen3"):
        hf["head_dim"] = config.head_dim
    if family == "llama":
        hf.update(attention_bias=config.bias, mlp_bias=config.bias, pretraining_tp=1)
    if family in ("mistral", "phi3"):
        hf["sliding_window"] = None  # full attention, as gptdeploy computes it
    if family in ("qwen2", "qwen3"):
        hf.update(use_sliding_window=False, sliding_window=None, max_window_layers=config.n_layer,
                  layer_types=["full_attention"] * config.n_layer)  # fmt: skip
    if family == "qwen3":
        hf["attention_bias"] = False
    if family == "phi3":
        hf.update(original_max_position_embeddings=config.block_size, resid_pdrop=config.dropout, embd_pdrop=0.0)
        hf["rope_parameters"]["partial_rotary_factor"] = 1.0
    return hf
