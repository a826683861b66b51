"""`generate()` and `stream()`: the one decoding loop over any `Runtime`, whatever backend computes the logits.

Prompts are encoded with bos, left-padded into a batch and prefilled together; then each step samples one token
per unfinished row with the shared sampler. Rows stop on eos, a stop token, a stop string, `max_new_tokens` (which
never counts the prompt) or a full context; finished rows are dropped from the runtime's batch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

import numpy as np

from gptdeploy.errors import GenerationError
from gptdeploy.runtimes.base import Runtime
from gptdeploy.sampling import Sampler, SamplingParams, setting
from gptdeploy.validation import check_ranges

FinishReason = Literal["length", "stop", "eos", "context_full"]


@dataclass(frozen=True, kw_only=True)
class GenerationConfig(SamplingParams):
    """Sampling (the fields of `SamplingParams`) plus when to stop."""

    max_new_tokens: int = setting(64, "Tokens to generate (the prompt never counts).")
    stop_strings: tuple[str, ...] = setting((), "Stop before this text (repeatable).", option="--stop", multiple=True)
    stop_token_ids: tuple[int, ...] = setting((), "Stop on these token ids (excluded from the result).", cli=False)
    ignore_eos: bool = setting(False, "Keep going past eos (benchmarks that need a fixed length).", flag=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges([
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (all(isinstance(s, str) and s for s in self.stop_strings), "stop strings must be non-empty text"),
            (all(isinstance(t, int) and not isinstance(t, bool) for t in self.stop_token_ids),
             f"stop token ids must be integers, got {self.stop_token_ids}"),
        ], GenerationError)  # fmt: skip


@dataclass(frozen=True)
class GenerationResult:
    prompt: str
    text: str  # the completion only, cut before any stop string
    tokens: list[int]  # generated token ids, without a final eos or stop token
    finish_reason: FinishReason
    prompt_tokens: int  # bos included
    prefill_seconds: float  # the batch's prompt pass (shared by every row of a batch)
    decode_seconds: float  # the batch's decode steps

    @property
    def tokens_per_second(self) -> float:
        total = self.prefill_seconds + self.decode_seconds
        return len(self.tokens) / total if total > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "prompt": self.prompt,
            "text": self.text,
            "tokens": self.tokens,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "prefill_seconds": self.prefill_seconds,
            "decode_seconds": self.decode_seconds,
            "tokens_per_second": self.tokens_per_second,
        }


@dataclass
class _Row:
    """One prompt's progress through the loop."""

    index: int  # position in the request, which also seeds its sampler
    prompt: str
    prompt_ids: list[int]
    generated: list[int] = field(default_factory=list)
    finish_reason: FinishReason | None = None
    text_before_stop: str | None = None  # set when a stop string ended the row

    def text(self, tokenizer) -> str:
        return self.text_before_stop if self.text_before_stop is not None else tokenizer.decode(self.generated)


class _Decoding:
    """The state of one batch being decoded; `steps()` advances it one token per row at a time."""

    def __init__(self, runtime: Runtime, prompts: Sequence[str], first_index: int, config: GenerationConfig):
        self.runtime, self.config, self.tokenizer = runtime, config, runtime.tokenizer
        self.rows = [_Row(first_index + i, p, self._encode(first_index + i, p)) for i, p in enumerate(prompts)]
        self.active = list(self.rows)
        self.sampler = Sampler(config, [row.index for row in self.rows])
        self.stop_ids = set(config.stop_token_ids)
        self.prefill_seconds = self.decode_seconds = 0.0

    def _encode(self, index: int, prompt: str) -> list[int]:
        if not prompt:
            raise GenerationError(f"prompt {index} is empty")
        ids = self.tokenizer.encode(prompt, bos=True)
        if len(ids) > self.runtime.info.max_seq_len:
            raise GenerationError(
                f"prompt {index} has {len(ids)} tokens, more than the model's context of "
                f"{self.runtime.info.max_seq_len}; shorten it"
            )
        return ids

    def steps(self) -> Iterator[None]:
        """Prefill, then one token per unfinished row per iteration until every row has finished."""
        logits, mask = self._prefill()
        while self.active:
            started = time.perf_counter()
            self._sample(logits)
            mask = self._drop_finished(mask)
            if self.active:
                mask = np.concatenate([mask, np.ones((len(self.active), 1), dtype=np.int64)], axis=1)
                logits = self.runtime.forward(np.array([[row.generated[-1]] for row in self.active]), mask)
            self.decode_seconds += time.perf_counter() - started
            yield

    def _prefill(self) -> tuple[np.ndarray, np.ndarray]:
        """Left-pad the prompts into one batch and run it; returns the last-position logits and the mask."""
        width = max(len(row.prompt_ids) for row in self.rows)
        ids = np.full((len(self.rows), width), self.tokenizer.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        for i, row in enumerate(self.rows):
            ids[i, width - len(row.prompt_ids) :], mask[i, width - len(row.prompt_ids) :] = row.prompt_ids, 1
        self.runtime.reset(len(self.rows))
        started = time.perf_counter()
        logits = self.runtime.forward(ids, mask)
        self.prefill_seconds = time.perf_counter() - started
        return logits, mask

    def _sample(self, logits: np.ndarray) -> None:
        penalize = self.config.repetition_penalty != 1
        histories = [row.prompt_ids + row.generated for row in self.active] if penalize else None
        tokens = self.sampler.sample(logits, [row.index for row in self.active], histories)
        for row, token in zip(self.active, tokens, strict=True):
            self._append(row, token)

    def _drop_finished(self, mask: np.ndarray) -> np.ndarray:
        """Remove finished rows from the batch (and the runtime's cache); a full cache finishes every row."""
        keep = [i for i, row in enumerate(self.active) if row.finish_reason is None]
        if keep and mask.shape[1] + 1 > self.runtime.info.max_seq_len:
            for i in keep:
                self.active[i].finish_reason = "context_full"
            keep = []
        if keep and len(keep) < len(self.active):
            self.runtime.keep_rows(np.array(keep))
        self.active = [self.active[i] for i in keep]
        return mask[keep]

    def _append(self, row: _Row, token: int) -> None:
        if token == self.tokenizer.eos_id and not self.config.ignore_eos:
            row.finish_reason = "eos"
            return
        if token in self.stop_ids:
            row.finish_reason = "stop"
            return
        row.generated.append(token)
        if self.config.stop_strings:
            text = self.tokenizer.decode(row.generated)
            cut = min((i for i in (text.find(s) for s in self.config.stop_strings) if i >= 0), default=-1)
            if cut >= 0:
                row.text_before_stop, row.finish_reason = text[:cut], "stop"
                return
        if len(row.generated) >= self.config.max_new_tokens:
            row.finish_reason = "length"

    def results(self) -> list[GenerationResult]:
        timing = (self.prefill_seconds, self.decode_seconds)
        return [
            GenerationResult(
                row.prompt, row.text(self.tokenizer), row.generated, row.finish_reason, len(row.prompt_ids), *timing
            )
            for row in self.rows
        ]

    def stable_text(self, row: _Row) -> str:
        """The part of the row's text that later tokens cannot change: no partial UTF-8 character at the end,
        no suffix that might still become a stop string."""
        text = row.text(self.tokenizer)
        if row.finish_reason is not None:
            return text
        text = text.rstrip("\ufffd")  # the decoder's mark for an incomplete multi-byte character
        held = max((n for s in self.config.stop_strings for n in range(len(s), 0, -1) if text.endswith(s[:n])),
                   default=0)  # fmt: skip
        return text[: len(text) - held]


@overload
def generate(runtime: Runtime, prompts: str, config: GenerationConfig = ...) -> GenerationResult: ...
@overload
def generate(runtime: Runtime, prompts: Sequence[str], config: GenerationConfig = ...) -> list[GenerationResult]: ...
def generate(runtime, prompts, config=GenerationConfig()):
    """Complete one prompt (returns one result) or a batch (a list, in order; batches as large as the runtime's
    max_batch_size run together)."""
    if isinstance(prompts, str):
        return generate(runtime, [prompts], config)[0]
    if not prompts:
        raise GenerationError("no prompts given")
    results: list[GenerationResult] = []
    step = runtime.info.max_batch_size
    for start in range(0, len(prompts), step):
        decoding = _Decoding(runtime, prompts[start : start + step], start, config)
        for _ in decoding.steps():
            pass
        results.extend(decoding.results())
    return results


def stream(runtime: Runtime, prompt: str, config: GenerationConfig = GenerationConfig()) -> Iterator[str]:
    """Yield the completion of one prompt as text pieces as soon as they are final; joined, they equal
    `generate(runtime, prompt, config).text`. A piece never ends inside a multi-byte character."""
    decoding = _Decoding(runtime, [prompt], 0, config)
    emitted = 0
    for _ in decoding.steps():
        text = decoding.stable_text(decoding.rows[0])
        if len(text) > emitted:
            yield text[emitted:]
            emitted = len(text)
