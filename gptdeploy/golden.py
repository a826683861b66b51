"""Golden references: prompts with the reference model's greedy continuations and teacher-forced logits.

Computed once from the PyTorch checkpoint at export time and stored in the bundle (`golden.npz`, plain arrays,
loaded without pickle), so any later artifact can be validated against the training-time reference without the
checkpoint. Computed through the `Runtime` protocol, so this module needs no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptdeploy.corpus.tasks import Example
from gptdeploy.errors import BundleError
from gptdeploy.fileio import atomic_write
from gptdeploy.generate import GenerationConfig, generate
from gptdeploy.runtimes.base import Runtime

CONTINUATION_TOKENS = 12


def golden_prompts(heldout: Sequence[Example], documents: Sequence[str]) -> list[str]:
    """Held-out data only: two prompts of each fine-tuning task and the openings of the last three documents (the
    validation split, never trained on), so the logits compared are those of real, unseen text."""
    tasks: list[str] = []
    for task in dict.fromkeys(e.task for e in heldout):
        tasks += [e.prompt for e in heldout if e.task == task][:2]
    return tasks + [document.split(". ")[0] for document in documents[-3:]]


@dataclass(frozen=True)
class Golden:
    prompts: list[str]
    prompt_lengths: list[int]  # tokens of each prompt (bos included)
    tokens: list[np.ndarray]  # prompt + greedy continuation, per prompt
    logits: list[np.ndarray]  # (len(tokens), vocab) float32: the reference's logits at every position

    def continuation(self, index: int) -> list[int]:
        return self.tokens[index][self.prompt_lengths[index] :].tolist()


def compute_golden(runtime: Runtime, prompts: Sequence[str], new_tokens: int = CONTINUATION_TOKENS) -> Golden:
    """Greedy continuations (eos ignored, so every one has `new_tokens`) and teacher-forced logits over them."""
    results = generate(runtime, list(prompts), GenerationConfig(max_new_tokens=new_tokens, ignore_eos=True))
    tokens, logits = [], []
    for prompt, result in zip(prompts, results, strict=True):
        ids = np.array(runtime.tokenizer.encode(prompt, bos=True) + result.tokens, dtype=np.int64)
        runtime.reset()
        logits.append(runtime.prefill(0, ids, all_logits=True))
        tokens.append(ids)
    return Golden(list(prompts), [r.prompt_tokens for r in results], tokens, logits)


def save_golden(path: Path, golden: Golden) -> Path:
    lengths = np.array([len(t) for t in golden.tokens], dtype=np.int64)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as stream:
            np.savez(
                stream,
                prompts=np.array(golden.prompts, dtype=str),
                prompt_lengths=np.array(golden.prompt_lengths, dtype=np.int64),
                lengths=lengths,
                tokens=np.concatenate(golden.tokens),
                logits=np.concatenate(golden.logits).astype(np.float32),
            )

    return atomic_write(path, write)


def load_golden(path: Path) -> Golden:
    try:
        with np.load(path, allow_pickle=False) as data:
            offsets = np.cumsum(data["lengths"])[:-1]
            return Golden(
                prompts=[str(p) for p in data["prompts"]],
                prompt_lengths=data["prompt_lengths"].tolist(),
                tokens=np.split(data["tokens"], offsets),
                logits=np.split(data["logits"], offsets),
            )
    except (OSError, KeyError, ValueError) as error:
        raise BundleError(f"cannot read golden references {path}: {error}") from error
