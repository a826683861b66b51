"""The reference decoder-only transformer: the PyTorch model every exported artifact is checked against.

Weight names follow GPT-2 (`wte`, `wpe`, `h`, `ln_f`, `c_attn`, `c_proj`, `lm_head`) so Hugging Face checkpoints map
onto it one to one. The model knows nothing about tokenization, training or sampling.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gptdeploy.config import PRESETS, GPTConfig
from gptdeploy.resources import require_model_memory

__all__ = ["GPT", "PRESETS", "GPTConfig", "KVCache", "recording_attention"]

KV = tuple[Tensor, Tensor]  # (key, value), each (B, n_kv_head, T, head_dim)


class KVCache(Protocol):
    """Where attention keeps keys and values; `update` appends a layer's new entries and returns all of them."""

    @property
    def length(self) -> int:
        """Tokens already cached (P), the same for every layer during a forward pass."""
        ...

    def update(self, layer: int, key: Tensor, value: Tensor) -> KV: ...


class ConcatKVCache:
    """Functional cache: present = concat(past, new). The form ONNX export uses (past in, present out)."""

    def __init__(self, past: list[KV] | None):
        self.present: list[KV] = list(past) if past is not None else []
        self._has_past = past is not None
        self.length = past[0][0].shape[2] if past else 0

    def update(self, layer: int, key: Tensor, value: Tensor) -> KV:
        if self._has_past:
            past_key, past_value = self.present[layer]
            key = torch.cat([past_key, key], dim=2)
            value = torch.cat([past_value, value], dim=2)
            self.present[layer] = (key, value)
        else:
            self.present.append((key, value))
        return key, value


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


def rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotary embedding in the half-split layout Hugging Face Llama checkpoints use."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.kv_heads, config.head_dim
        qkv_width = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, qkv_width, bias=config.bias or config.qkv_bias)
        self.c_proj = nn.Linear(self.n_head * self.head_dim, config.n_embd, bias=config.bias)
        if config.qk_norm:
            self.q_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps)
            self.k_norm = nn.RMSNorm(self.head_dim, eps=config.norm_eps)
        self.qk_norm = config.qk_norm
        self.dropout = config.dropout
        self.causal = config.causal
        self.record_weights = False  # set by `recording_attention`: keep this layer's attention weights
        self.weights: Tensor | None = None  # (B, nh, T, P + T) of the last forward pass while recording

    def forward(self, x: Tensor, rope: KV | None, mask: Tensor | None, cache: KVCache | None) -> Tensor:
        B, T, _ = x.shape
        q_width, kv_width = self.n_head * self.head_dim, self.n_kv_head * self.head_dim
        q, k, v = self.c_attn(x).split([q_width, kv_width, kv_width], dim=2)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, T, hs)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)  # over each head's hs
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nkv, P + T, hs)
        if self.n_kv_head != self.n_head:
            repeats = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(repeats, dim=1), v.repeat_interleave(repeats, dim=1)  # (B, nh, P + T, hs)
        dropout = self.dropout if self.training else 0.0
        is_causal = mask is None and self.causal
        if self.record_weights:
            y = self._attend_recording(q, k, v, mask, is_causal)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, is_causal=is_causal)
        y = y.transpose(1, 2).reshape(B, T, q_width)  # (B, T, nh * hs)
        return F.dropout(self.c_proj(y), dropout, self.training)

    def _attend_recording(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        """Attention with its weights materialized (what SDPA computes without them): for inspection only."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, nh, T, P + T)
        if is_causal:
            T, S = scores.shape[-2:]
            scores = scores.masked_fill(torch.ones(T, S, dtype=torch.bool, device=q.device).triu(S - T + 1), -math.inf)
        elif mask is not None:
            scores = scores + mask
        self.weights = scores.softmax(dim=-1)
        return self.weights @ v  # (B, nh, T, hs)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        # SwiGLU keeps gate and up projections in one matrix: [gate; up]
        fc_width = 2 * config.hidden_size if self.swiglu else config.hidden_size
        self.c_fc = nn.Linear(config.n_embd, fc_width, bias=config.bias)
        self.c_proj = nn.Linear(config.hidden_size, config.n_embd, bias=config.bias)
        self.dropout = config.dropout

    def forward(self, x: Tensor) -> Tensor:
        h = self.c_fc(x)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")
        return F.dropout(self.c_proj(h), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, rope: KV | None, mask: Tensor | None, cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        require_model_memory(config)  # before allocating: an absurd config is refused in milliseconds
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.positions == "learned" else None
        self.h = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.score = nn.Linear(config.n_embd, config.num_labels) if config.num_labels else None
        if config.positions == "rope":
            exponents = torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim
            self.register_buffer("inv_freq", 1.0 / config.rope_theta**exponents, persistent=False)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: scale residual projections by depth
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        """Unique parameters (a tied LM head counts once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: Tensor,
        past_kv: list[KV] | KVCache | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        classify: bool = False,
    ) -> tuple[Tensor, list[KV] | KVCache | None]:
        """Logits for (B, T) tokens appended after the cached ones.

        past_kv: None (nothing cached), a list of per-layer (key, value) tensors (B, n_kv_head, P, head_dim) to
            extend by concatenation, or a `KVCache` that stores in place (what a runtime pre-allocates).
        attention_mask: (B, P + T), 1 for real tokens and 0 for (left) padding; None means all real.
        position_ids: (B, T); None means P..P+T-1 (a padded batch passes the positions each row has alone:
            `gptdeploy.graph_contract.position_ids`).
        classify: return the classification head's scores (B, num_labels) instead (`classify`), and no cache.
        Returns logits (B, T, vocab) and the cache: the list of presents, or the `KVCache` passed in.
        """
        if classify:  # through forward, so that DDP sees the pass
            return self.classify(idx, attention_mask), None
        x, cache = self.hidden_states(idx, past_kv, attention_mask, position_ids)
        logits = self.lm_head(x)  # (B, T, vocab)
        return logits, cache.present if isinstance(cache, ConcatKVCache) else cache

    def classify(self, idx: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Class scores (B, num_labels) of whole sequences: the head over the mean of the real tokens' final hidden
        states (attention_mask (B, T): 1 for real tokens, 0 for padding; None means all real)."""
        if self.score is None:
            raise ValueError("this model has no classification head (num_labels is 0)")
        x, _ = self.hidden_states(idx, None, attention_mask, None)  # (B, T, C)
        return self._pooled_scores(x, attention_mask)

    def encode(self, idx: Tensor, attention_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """One pass of an encoder, no cache: token logits (B, T, vocab) and, with a head, class scores (B, labels)."""
        x, _ = self.hidden_states(idx, None, attention_mask, None)  # (B, T, C)
        return self.lm_head(x), self._pooled_scores(x, attention_mask) if self.score is not None else None

    def _pooled_scores(self, x: Tensor, attention_mask: Tensor | None) -> Tensor:
        weights = torch.ones(x.shape[:2], dtype=x.dtype, device=x.device) if attention_mask is None else attention_mask
        weights = weights.to(x.dtype)[..., None]  # (B, T, 1)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, C)
        return self.score(pooled)  # (B, num_labels)

    def hidden_states(
        self,
        idx: Tensor,
        past_kv: list[KV] | KVCache | None,
        attention_mask: Tensor | None,
        position_ids: Tensor | None,
    ) -> tuple[Tensor, KVCache]:
        """The final normed hidden states (B, T, C) the heads read, and the cache."""
        B, T = idx.shape
        cache = past_kv if past_kv is not None and hasattr(past_kv, "update") else ConcatKVCache(past_kv)
        past_len = cache.length
        if position_ids is None:
            position_ids = torch.arange(past_len, past_len + T, device=idx.device)[None]  # (1, T)
        if attention_mask is None and past_len == 0:
            mask = None  # plain causal (or full) attention: lets SDPA take its fastest kernel
        else:
            mask = attention_bias(attention_mask, B, T, past_len, self.config.causal, idx.device, self.wte.weight.dtype)
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(position_ids)
        else:
            freqs = position_ids[..., None].to(torch.float32) * self.inv_freq  # (B, T, hs/2)
            angles = torch.cat([freqs, freqs], dim=-1)[:, None]  # (B, 1, T, hs)
            rope = (angles.cos().to(x.dtype), angles.sin().to(x.dtype))
        for block in self.h:
            x = block(x, rope, mask, cache)
        return self.ln_f(x), cache


@contextlib.contextmanager
def recording_attention(model: GPT) -> Iterator[list[CausalSelfAttention]]:
    """While active, every attention layer of `model` keeps the weights of its last forward pass in `.weights`
    (computed in the layer's own forward, so they are the weights its output is made from)."""
    layers = [block.attn for block in model.h]
    for layer in layers:
        layer.record_weights = True
    try:
        yield layers
    finally:
        for layer in layers:
            layer.record_weights, layer.weights = False, None


def attention_bias(
    attention_mask: Tensor | None,
    B: int,
    T: int,
    past_len: int,
    causal: bool,
    device: torch.device,
    dtype: torch.dtype,
) -> Tensor:
    """Additive mask (B, 1, T, P + T): 0 where a query may attend, the dtype's minimum elsewhere.

    Causal: a query sees keys up to its own position; otherwise every key. Padding is never seen. The minimum (not
    -inf) keeps rows that are all padding finite instead of NaN.
    """
    total = past_len + T
    query_pos = torch.arange(past_len, total, device=device)[:, None]  # (T, 1)
    key_pos = torch.arange(total, device=device)[None, :]  # (1, P + T)
    allowed = (key_pos <= query_pos if causal else key_pos >= 0)[None, None]  # (1, 1, T, P + T)
    if attention_mask is not None:
        allowed = allowed & attention_mask[:, None, None, :].bool()  # (B, 1, T, P + T)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(allowed, zero, torch.finfo(dtype).min).expand(B, 1, T, total)
