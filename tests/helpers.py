"""Tiny models and texts shared by the tests: built in seconds so the suite runs on 2 CPU cores."""

from __future__ import annotations

import numpy as np
import torch

from gptdeploy.model import GPT, GPTConfig
from gptdeploy.runtimes.base import RuntimeInfo, SlotRuntime

SAMPLE_TEXT = [
    "Mia lives in Riverton. She has a brown dog named Pip, and she walks him by the river every morning.",
    "Tom had 12 apples and gave 5 to Mia, so he had 7 left. Q: What is 23 plus 48?\nA: 71",
    "The market in Hillford opens on Monday. Farmers sell bread, cheese, eggs and green beans there.",
]

# Every option the reference model supports, each in at least one variant.
MODEL_VARIANTS = {
    "gpt2": {},
    "llama": dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, tie_embeddings=False),
    "mqa-untied-gelu-rope": dict(positions="rope", n_kv_head=1, tie_embeddings=False),
    "rmsnorm-swiglu-learned-bias": dict(norm="rmsnorm", mlp="swiglu", bias=True),
    # Qwen2's q/k/v-only biases with a tied head; Qwen3's per-head q/k norm with heads wider than n_embd / n_head
    "qwen2": dict(positions="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=2, bias=False, qkv_bias=True),
    "qwen3": dict(
        positions="rope",
        norm="rmsnorm",
        mlp="swiglu",
        n_kv_head=2,
        bias=False,
        qk_norm=True,
        head_size=32,
        tie_embeddings=False,
    ),
}


def tiny_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("tiny", vocab_size=320, **overrides)).eval()


class ScriptedRuntime(SlotRuntime):
    """A runtime whose logits spell out a fixed token script, one script position per token a slot has generated:
    lets engine and generate() tests choose what the model says. Only for testing the layers above the Runtime
    protocol; real backends are tested on real models."""

    def __init__(self, tokenizer, script: list[int], max_seq_len: int = 64, max_slots: int = 8):
        super().__init__(max_slots)
        self.tokenizer, self.script = tokenizer, script
        self.info = RuntimeInfo("scripted", "fp32", "cpu", tokenizer.vocab_size, max_seq_len, max_slots, True)
        self.prompt_lengths = np.zeros(max_slots, dtype=np.int64)

    def _logits(self, slot: int, length: int) -> np.ndarray:
        logits = np.zeros(self.info.vocab_size, dtype=np.float32)
        logits[self.script[min(length - self.prompt_lengths[slot], len(self.script) - 1)]] = 10.0
        return logits

    def _prefill(self, slot, tokens, start, all_logits):
        if start == 0:
            self.prompt_lengths[slot] = len(tokens)
        logits = self._logits(slot, start + len(tokens))
        return np.stack([logits] * len(tokens)) if all_logits else logits

    def _decode(self, slots, tokens, starts):
        return np.stack([self._logits(slot, start + 1) for slot, start in zip(slots, starts, strict=True)])
