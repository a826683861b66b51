"""The PyTorch reference runtime: the checkpoint's model with a KV cache pre-allocated to the maximum length.

Decode steps write keys and values in place (no per-step concatenation). fp32 is the reference; fp16 and bf16
run on CUDA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gptdeploy.checkpoint import load_checkpoint
from gptdeploy.errors import BackendError
from gptdeploy.graph_contract import position_ids
from gptdeploy.model import GPT, KV
from gptdeploy.runtimes.base import CachedRuntime, RuntimeInfo
from gptdeploy.tokenizer import Tokenizer

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class StaticKVCache:
    """Keys and values of every layer in one buffer (layer, k/v, B, n_kv_head, max_len, head_dim)."""

    def __init__(self, model: GPT, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device):
        c = model.config
        self.buffer = torch.zeros(c.n_layer, 2, batch_size, c.kv_heads, max_len, c.head_dim, dtype=dtype, device=device)
        self.length = 0

    def update(self, layer: int, key: Tensor, value: Tensor) -> KV:
        end = self.length + key.shape[2]
        self.buffer[layer, 0, :, :, self.length : end] = key
        self.buffer[layer, 1, :, :, self.length : end] = value
        return self.buffer[layer, 0, :, :, :end], self.buffer[layer, 1, :, :, :end]

    def keep_rows(self, rows: Tensor) -> None:
        self.buffer = self.buffer.index_select(2, rows)


class TorchRuntime(CachedRuntime):
    """Runs a `GPT` (loaded from a checkpoint, or in memory; without a tokenizer it serves token-level callers)."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer | None,
        device: str = "cpu",
        precision: str = "fp32",
        max_batch_size: int = 64,
    ):
        super().__init__()
        if precision not in DTYPES:
            raise BackendError(f"torch runtime precision must be one of {', '.join(DTYPES)}, got {precision!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("device cuda requested but torch sees no CUDA GPU; use --device cpu")
        if precision != "fp32" and self.device.type != "cuda":
            raise BackendError(f"{precision} runs on CUDA only; use precision fp32 on {self.device}")
        self.dtype = DTYPES[precision]
        self.model = model.to(self.device, self.dtype).eval()
        self.tokenizer = tokenizer
        config = model.config
        self.info = RuntimeInfo("torch", precision, str(self.device), config.vocab_size, config.block_size,
                                max_batch_size)  # fmt: skip
        self.cache: StaticKVCache | None = None

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", precision: str = "fp32", max_batch_size: int = 64):
        checkpoint = load_checkpoint(path)
        return cls(checkpoint.model, checkpoint.tokenizer, device, precision, max_batch_size)

    def _reset(self, batch_size: int) -> None:
        self.cache = StaticKVCache(self.model, batch_size, self.info.max_seq_len, self.dtype, self.device)

    @torch.inference_mode()
    def _forward(self, input_ids: np.ndarray, attention_mask: np.ndarray, all_logits: bool) -> np.ndarray:
        ids = torch.from_numpy(input_ids).to(self.device)
        mask = torch.from_numpy(attention_mask).to(self.device)
        positions = torch.from_numpy(position_ids(attention_mask, input_ids.shape[1])).to(self.device)
        self.cache.length = self.length
        logits, _ = self.model(ids, self.cache, attention_mask=mask, position_ids=positions)
        logits = logits if all_logits else logits[:, -1]
        return logits.float().cpu().numpy()

    def _keep_rows(self, rows: np.ndarray) -> None:
        self.cache.keep_rows(torch.from_numpy(rows).to(self.device))
