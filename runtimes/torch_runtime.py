"""The PyTorch reference runtime: the checkpoint's model over a KV cache of `max_slots` slots allocated once.

Each forward pass writes the new keys and values of every row at that row's own positions in the one buffer (no
per-step concatenation) and masks each row to its own length. fp32 is the reference; fp16 and bf16 run on CUDA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gptdeploy.checkpoint import load_checkpoint
from gptdeploy.encoder import EncoderInfo
from gptdeploy.errors import BackendError
from gptdeploy.graph_contract import CLASS_SCORES, LOGITS
from gptdeploy.model import GPT, KV
from gptdeploy.runtimes.base import DEFAULT_SLOTS, RuntimeInfo, SlotRuntime, check_cache_memory
from gptdeploy.tokenizer import Tokenizer

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class SlotKVCache:
    """One forward pass's view of the runtime's buffer (layer, k/v, slot, kv_head, position, head_dim): the rows it
    runs, and where each row's new tokens go. What attention reads back is every row up to the longest."""

    def __init__(self, buffer: Tensor, rows: Tensor, starts: Tensor, new_tokens: int):
        self.buffer, self.rows, self.starts = buffer, rows, starts
        self.length = int(starts.max())  # the model builds its causal mask from this; `mask` narrows each row
        self.positions = starts[:, None] + torch.arange(new_tokens, device=starts.device)  # (n, T)
        self.contiguous = rows.numel() == 1 or bool((rows[1:] - rows[:-1] == 1).all())

    def update(self, layer: int, key: Tensor, value: Tensor) -> KV:
        end = self.length + key.shape[2]
        stored = []
        for index, new in ((0, key), (1, value)):
            cache = self.buffer[layer, index]  # (slots, H, L, D)
            cache[self.rows[:, None], :, self.positions] = new.transpose(1, 2)  # (n, T, H, D) at (row, position)
            if self.contiguous:  # a view, no copy
                first = int(self.rows[0])
                stored.append(cache[first : first + self.rows.numel(), :, :end])
            else:
                stored.append(cache[self.rows, :, :end])
        return stored[0], stored[1]

    def mask(self, new_tokens: int) -> Tensor:
        """(n, length + T): 1 where a row has a token (its own ones, not another row's longer past)."""
        columns = torch.arange(self.length + new_tokens, device=self.starts.device)
        return (columns[None, :] < (self.starts + new_tokens)[:, None]).long()


class TorchRuntime(SlotRuntime):
    """Runs a `GPT` (loaded from a checkpoint, or in memory; without a tokenizer it serves token-level callers)."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer | None,
        device: str = "cpu",
        precision: str = "fp32",
        max_slots: int = DEFAULT_SLOTS,
    ):
        super().__init__(max_slots)
        if precision not in DTYPES:
            raise BackendError(f"torch runtime precision must be one of {', '.join(DTYPES)}, got {precision!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendError("device cuda requested but torch sees no CUDA GPU; use --device cpu")
        if precision != "fp32" and self.device.type != "cuda":
            raise BackendError(f"{precision} runs on CUDA only; use precision fp32 on {self.device}")
        if not model.config.causal:
            raise BackendError(
                "this model is an encoder (pretrained with --objective mlm): it sees both sides of "
                "every token, so it cannot generate; use `gptdeploy fill-mask` or `gptdeploy classify`"
            )
        self.dtype = DTYPES[precision]
        self.model = model.to(self.device, self.dtype).eval()
        self.tokenizer = tokenizer
        c = model.config
        self.info = RuntimeInfo("torch", precision, str(self.device), c.vocab_size, c.block_size, max_slots, True)
        shape = (c.n_layer, 2, max_slots, c.kv_heads, c.block_size, c.head_dim)
        check_cache_memory(c, max_slots, self.dtype.itemsize)
        self.buffer = torch.zeros(shape, dtype=self.dtype, device=self.device)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", precision: str = "fp32", max_slots: int = DEFAULT_SLOTS):
        checkpoint = load_checkpoint(path)
        return cls(checkpoint.model, checkpoint.tokenizer, device, precision, max_slots)

    def cache_pointers(self) -> list[int]:
        """Where the KV cache lives: one buffer, allocated once."""
        return [self.buffer.data_ptr()]

    @torch.inference_mode()
    def _run(self, rows: np.ndarray, tokens: np.ndarray, starts: np.ndarray) -> Tensor:
        """Logits (n, T, vocab) of `tokens` (n, T) appended to `rows` at `starts`."""
        ids = torch.from_numpy(tokens).to(self.device)
        starts_t = torch.from_numpy(starts).to(self.device)
        cache = SlotKVCache(self.buffer, torch.from_numpy(rows).to(self.device), starts_t, tokens.shape[1])
        logits, _ = self.model(ids, cache, attention_mask=cache.mask(tokens.shape[1]), position_ids=cache.positions)
        return logits

    def _prefill(self, slot: int, tokens: np.ndarray, start: int, all_logits: bool) -> np.ndarray:
        logits = self._run(np.array([slot]), tokens[None], np.array([start]))[0]
        return (logits if all_logits else logits[-1]).float().cpu().numpy()

    def _decode(self, slots: np.ndarray, tokens: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return self._run(slots, tokens[:, None], starts)[:, -1].float().cpu().numpy()


class TorchEncoder:
    """The reference encoder: one pass of the checkpoint's `GPT` over right-padded texts, no KV cache."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, labels: list[str], device: str = "cpu"):
        if model.config.causal:
            raise BackendError("this model is a decoder (a causal model): fill-mask and classify need an encoder "
                               "pretrained with --objective mlm")  # fmt: skip
        if len(labels) != model.config.num_labels:
            raise BackendError(f"the model has {model.config.num_labels} classes but {len(labels)} label names")
        self.device = torch.device(device)
        self.model, self.tokenizer = model.to(self.device).eval(), tokenizer
        self.info = EncoderInfo("torch", "fp32", str(self.device), model.config.block_size, list(labels))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> TorchEncoder:
        checkpoint = load_checkpoint(path)
        return cls(checkpoint.model, checkpoint.tokenizer, list(checkpoint.info.get("labels") or []), device)

    @torch.inference_mode()
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        ids = torch.from_numpy(np.ascontiguousarray(input_ids, dtype=np.int64)).to(self.device)
        mask = torch.from_numpy(np.ascontiguousarray(attention_mask, dtype=np.int64)).to(self.device)
        logits, scores = self.model.encode(ids, mask)
        outputs = {LOGITS: logits} if scores is None else {LOGITS: logits, CLASS_SCORES: scores}
        return {name: value.float().cpu().numpy() for name, value in outputs.items()}

    def close(self) -> None:
        pass

    def __enter__(self) -> TorchEncoder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
