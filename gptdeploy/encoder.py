"""Using an encoder: fill-mask and classify, on any backend that runs one.

An `Encoder` maps (input_ids, attention_mask) to token logits (and class scores when the model has a head) in one
pass, with no KV cache; the torch, ONNX Runtime and TensorRT backends implement it (`runtimes/`). Everything above
that pass (tokenizing, padding, picking the masked positions, softmax, top-k, labels) is written once, here, so every
backend gives its answers through the same code. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from gptdeploy.errors import GenerationError
from gptdeploy.graph_contract import CLASS_SCORES, LOGITS
from gptdeploy.tokenizer import MASK, Tokenizer
from gptdeploy.validation import checked_arguments


@dataclass(frozen=True)
class EncoderInfo:
    backend: str  # torch | onnxruntime | tensorrt
    precision: str
    device: str
    max_seq_len: int
    labels: list[str]  # the classification head's classes, in score order; [] without a head


class Encoder(Protocol):
    info: EncoderInfo
    tokenizer: Tokenizer

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        """(B, T) int64 ids and mask (1 = real token, right padding) -> float32 "logits" (B, T, vocab) and, with a
        head, "class_scores" (B, labels)."""

    def close(self) -> None: ...

    def __enter__(self) -> Encoder: ...

    def __exit__(self, *exc) -> None: ...


def encode_texts(tokenizer: Tokenizer, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask), both (B, T) int64: bos + text, right-padded with pad; longer texts are cut."""
    rows = [ids[:max_len] for ids in tokenizer.encode_batch(list(texts), bos=True)]
    width = max(len(row) for row in rows)
    input_ids = np.full((len(rows), width), tokenizer.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)], mask[index, : len(row)] = row, 1
    return input_ids, mask


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores.astype(np.float64) - scores.max(-1, keepdims=True)
    probs = np.exp(shifted)
    return probs / probs.sum(-1, keepdims=True)


@dataclass(frozen=True)
class FillMaskResult:
    text: str
    predictions: list[list[dict]]  # per <|mask|>, best first: {"token", "token_id", "probability"}
    filled: str  # the text with every mask replaced by its top prediction

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ClassifyResult:
    text: str
    label: str
    probabilities: dict[str, float]  # every label's softmax probability

    def to_dict(self) -> dict:
        return asdict(self)


def _texts(texts: str | Sequence[str]) -> list[str]:
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise GenerationError("give at least one text")
    return texts


def _lengths(encoder: Encoder, texts: list[str]) -> None:
    for text in texts:
        count = len(encoder.tokenizer.encode(text)) + 1
        if count > encoder.info.max_seq_len:
            raise GenerationError(f"{text[:40]!r}... has {count} tokens, more than the context of "
                                  f"{encoder.info.max_seq_len}")  # fmt: skip


def fill_mask_with(encoder: Encoder, texts: str | Sequence[str], top_k: int = 5) -> list[FillMaskResult]:
    """The `top_k` most likely tokens at every `<|mask|>` of each text (special tokens are never proposed)."""
    texts, tokenizer = _texts(texts), encoder.tokenizer
    if tokenizer.mask_id is None:
        raise GenerationError("this model's tokenizer has no <|mask|> token: fill-mask needs a model pretrained with "
                              "--objective mlm")  # fmt: skip
    if top_k < 1:
        raise GenerationError(f"top_k must be at least 1, got {top_k}")
    _lengths(encoder, texts)
    input_ids, mask = encode_texts(tokenizer, texts, encoder.info.max_seq_len)
    logits = encoder.run(input_ids, mask)[LOGITS]
    special = sorted(tokenizer.special_ids)
    results = []
    for row, text in enumerate(texts):
        positions = np.flatnonzero(input_ids[row] == tokenizer.mask_id)
        if positions.size == 0:
            raise GenerationError(f"{text!r} has no {MASK}: put one where a token should be predicted")
        predictions, filled = [], input_ids[row, : int(mask[row].sum())].copy()
        for position in positions:
            scores = logits[row, position].astype(np.float64)
            scores[special] = -np.inf
            probs = softmax(scores)
            best = np.argsort(-probs, kind="stable")[:top_k]
            predictions.append([{"token": tokenizer.decode([int(i)]), "token_id": int(i),
                                 "probability": float(probs[i])} for i in best])  # fmt: skip
            filled[position] = best[0]
        results.append(FillMaskResult(text, predictions, tokenizer.decode(filled[1:].tolist())))
    return results


def classify_with(encoder: Encoder, texts: str | Sequence[str]) -> list[ClassifyResult]:
    """The label of each text and every label's probability, from the model's classification head."""
    texts, labels = _texts(texts), encoder.info.labels
    if not labels:
        raise GenerationError("this model has no classification head: fine-tune it with `gptdeploy finetune "
                              "--task classify` first")  # fmt: skip
    _lengths(encoder, texts)
    input_ids, mask = encode_texts(encoder.tokenizer, texts, encoder.info.max_seq_len)
    probs = softmax(encoder.run(input_ids, mask)[CLASS_SCORES])
    return [ClassifyResult(text, labels[int(p.argmax())], dict(zip(labels, map(float, p), strict=True)))
            for text, p in zip(texts, probs, strict=True)]  # fmt: skip


@checked_arguments(GenerationError)
def fill_mask(model: str | Path, texts: str | Sequence[str], top_k: int = 5, backend: str = "auto",
              device: str | None = None, artifact: str | None = None) -> list[FillMaskResult]:  # fmt: skip
    """`gptdeploy fill-mask` as a call: open the checkpoint or bundle at `model` and fill each text's masks."""
    from gptdeploy.runtimes.base import load_encoder

    with load_encoder(model, backend, device, artifact) as encoder:
        return fill_mask_with(encoder, texts, top_k)


@checked_arguments(GenerationError)
def classify(model: str | Path, texts: str | Sequence[str], backend: str = "auto", device: str | None = None,
             artifact: str | None = None) -> list[ClassifyResult]:  # fmt: skip
    """`gptdeploy classify` as a call: open the checkpoint or bundle at `model` and label each text."""
    from gptdeploy.runtimes.base import load_encoder

    with load_encoder(model, backend, device, artifact) as encoder:
        return classify_with(encoder, texts)
