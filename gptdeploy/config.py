"""The model configuration: a frozen dataclass with presets, saved as JSON next to what it describes.

Kept apart from `model.py` so bundles and the non-torch runtimes can read a config without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from gptdeploy.errors import ConfigError
from gptdeploy.validation import check_field_types, check_ranges


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 2048  # set from the tokenizer; a preset's value is only a default
    block_size: int = 256  # maximum sequence length (prompt + generated tokens)
    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # query heads
    n_kv_head: int | None = None  # key/value heads for grouped-query attention; None = n_head (plain MHA)
    n_embd: int = 128  # residual stream width; must divide by n_head unless head_size is set
    head_size: int | None = None  # width of each attention head; None = n_embd / n_head (Qwen3 decouples them)
    mlp_hidden: int | None = None  # MLP inner width; None = 4 * n_embd (GELU) or 8/3 * n_embd rounded (SwiGLU)
    positions: Literal["learned", "rope"] = "learned"  # learned absolute embeddings (GPT-2) or rotary (Llama)
    rope_theta: float = 10000.0  # rotary base frequency
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5
    qk_norm: bool = False  # RMSNorm over each head's query and key before the rotation (Qwen3)
    mlp: Literal["gelu", "swiglu"] = "gelu"  # GELU uses GPT-2's tanh approximation
    bias: bool = True  # biases in linear layers and LayerNorm (GPT-2: yes, Llama: no)
    qkv_bias: bool = False  # biases on the query/key/value projection alone, in a model without others (Qwen2)
    tie_embeddings: bool = True  # lm_head shares its weight with wte
    dropout: float = 0.0  # training only; 0 for small data sets that are not overfitted
    causal: bool = True  # False: every token attends to both sides (an encoder, pretrained with --objective mlm)
    num_labels: int = 0  # > 0: a classification head (`score`) over the mean of the final hidden states

    def __post_init__(self) -> None:
        check_field_types(self, ConfigError, "model config")
        check_ranges([
            (self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}"),
            (self.block_size > 0, f"block_size must be positive, got {self.block_size}"),
            (self.n_layer > 0, f"n_layer must be positive, got {self.n_layer}"),
            (self.n_head > 0, f"n_head must be positive, got {self.n_head}"),
            (self.head_size is not None or self.n_embd % self.n_head == 0,
             f"n_embd {self.n_embd} does not divide by n_head {self.n_head}; set head_size to decouple them"),
            (self.head_size is None or self.head_size > 0, f"head_size must be positive, got {self.head_size}"),
            (self.kv_heads > 0 and self.n_head % self.kv_heads == 0,
             f"n_head {self.n_head} does not divide by n_kv_head {self.n_kv_head}"),
            (self.positions in ("learned", "rope"), f"positions must be 'learned' or 'rope', got {self.positions!r}"),
            (self.norm in ("layernorm", "rmsnorm"), f"norm must be 'layernorm' or 'rmsnorm', got {self.norm!r}"),
            (self.mlp in ("gelu", "swiglu"), f"mlp must be 'gelu' or 'swiglu', got {self.mlp!r}"),
            (self.positions != "rope" or self.head_dim % 2 == 0,
             f"rotary positions need an even head_dim, got {self.head_dim}"),
            (not (self.qkv_bias and self.bias), "qkv_bias adds q/k/v biases to a model without biases; with "
                                                   "bias=True every linear layer has one already"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (0 < self.norm_eps < 1, f"norm_eps must be in (0, 1), got {self.norm_eps}"),
            (0 < self.rope_theta < math.inf, f"rope_theta must be positive and finite, got {self.rope_theta}"),
            (self.mlp_hidden is None or self.mlp_hidden > 0, f"mlp_hidden must be positive, got {self.mlp_hidden}"),
            (self.num_labels >= 0, f"num_labels must be 0 (no classification head) or more, got {self.num_labels}"),
        ], ConfigError)  # fmt: skip

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head if self.head_size is None else self.head_size

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def hidden_size(self) -> int:
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            return 64 * math.ceil(8 * self.n_embd / 3 / 64)
        return 4 * self.n_embd

    @property
    def num_parameters(self) -> int:
        """Parameters of the model this config describes, counted without building it (a tied head counts once)."""
        C, bias = self.n_embd, self.bias
        norm = C * (2 if bias and self.norm == "layernorm" else 1)
        qkv = (self.n_head + 2 * self.kv_heads) * self.head_dim
        fc = (2 if self.mlp == "swiglu" else 1) * self.hidden_size
        attention_width = self.n_head * self.head_dim
        linear = C * qkv + attention_width * C + C * fc + self.hidden_size * C + (C + fc + C if bias else 0)
        linear += qkv if bias or self.qkv_bias else 0
        linear += 2 * self.head_dim if self.qk_norm else 0
        positions = self.block_size * C if self.positions == "learned" else 0
        head = 0 if self.tie_embeddings else self.vocab_size * C
        score = self.num_labels * (C + 1)
        return self.vocab_size * C + positions + self.n_layer * (2 * norm + linear) + norm + head + score

    def kv_cache_bytes(self, batch_size: int, bytes_per_value: int = 4) -> int:
        """A KV cache holding `batch_size` sequences of the full context."""
        return 2 * self.n_layer * batch_size * self.kv_heads * self.block_size * self.head_dim * bytes_per_value

    def training_bytes(self, batch_size: int) -> int:
        """A rough floor for training in fp32: weights, gradients and AdamW's two moments, plus the activations of one
        micro-batch (per layer: about 16 widths, the MLP and the attention matrix per token; then the logits)."""
        T = self.block_size
        per_token = self.n_layer * (16 * self.n_embd + 2 * self.hidden_size + 2 * self.n_head * T) + 2 * self.vocab_size
        return 4 * (4 * self.num_parameters + batch_size * T * per_token)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config fields {unknown}; is this checkpoint from a newer gptdeploy?")
        return cls(**data)

    @classmethod
    def preset(cls, name: str, **overrides) -> GPTConfig:
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"unknown model config fields {unknown}; known: {', '.join(f.name for f in fields(cls))}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, GPTConfig] = {
    # trains in seconds; used by the tests
    "tiny": GPTConfig(vocab_size=512, block_size=128, n_layer=2, n_head=4, n_embd=64),
    # the demo default: learns the shipped corpus in minutes on 2 CPU cores
    "small": GPTConfig(vocab_size=2048, block_size=256, n_layer=4, n_head=4, n_embd=128),
    # GPT-2 small's shape, for benchmarks (not trained here)
    "gpt2-124m": GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}
