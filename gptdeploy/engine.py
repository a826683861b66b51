"""Continuous batching: many requests share one runtime's slots. Sampling, stopping and text streaming are written
once, here, for generate(), stream(), the C API and the server.

Each `step()` is one scheduling round:
1. admit waiting requests into free slots, first come first served (the lowest free slot first, which keeps the
   busy rows of the cache together);
2. prefill up to `prefill_budget` prompt tokens, in chunks of `prefill_chunk` that start at multiples of it in the
   prompt (so a prompt is cut the same way whatever else is running), shortest remaining prompt first: a short
   request is not stuck behind a long one, and no long prompt stalls the others' decoding for more than a chunk;
3. decode one token for every request whose prompt is in its slot, in one call of the runtime.
A finished or cancelled request gives its slot back at once. The engine knows nothing about threads or text
transport: callers step it (generate, stream) or run an `EngineLoop`, which steps on a thread of its own.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from gptdeploy.errors import GenerationError
from gptdeploy.runtimes.base import Runtime
from gptdeploy.sampling import Sampler, SamplingParams, setting
from gptdeploy.validation import check_ranges

FinishReason = Literal["length", "stop", "eos", "context_full", "cancelled", "error"]
DEFAULT_PREFILL_CHUNK = 64


@dataclass(frozen=True, kw_only=True)
class GenerationConfig(SamplingParams):
    """Sampling (the fields of `SamplingParams`) plus when to stop."""

    max_new_tokens: int = setting(64, "Tokens to generate (the prompt never counts).")
    stop_strings: tuple[str, ...] = setting((), "Stop before this text (repeatable).", option="--stop", multiple=True)
    stop_token_ids: tuple[int, ...] = setting((), "Stop on these token ids (excluded from the result).", cli=False)
    ignore_eos: bool = setting(False, "Keep going past eos (benchmarks that need a fixed length).", flag=True)
    logprobs: int | None = setting(None, "Record each token's log-probability and this many top alternatives.",
                                   cli=False)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges([
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (all(isinstance(s, str) and s for s in self.stop_strings), "stop strings must be non-empty text"),
            (all(isinstance(t, int) and not isinstance(t, bool) for t in self.stop_token_ids),
             f"stop token ids must be integers, got {self.stop_token_ids}"),
            (self.logprobs is None or self.logprobs >= 0, f"logprobs must be >= 0, got {self.logprobs}"),
        ], GenerationError)  # fmt: skip


DEFAULTS = GenerationConfig()


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability under the model (its raw logits, before any sampling setting), and the
    most likely tokens at that step."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...]  # (token, logprob), most likely first


def token_logprob(logits: np.ndarray, token: int, top: int) -> TokenLogprob:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    best = np.argsort(-logprobs, kind="stable")[:top]
    return TokenLogprob(token, float(logprobs[token]), tuple((int(t), float(logprobs[t])) for t in best))


@dataclass(frozen=True)
class GenerationResult:
    prompt: str
    text: str  # the completion only, cut before any stop string
    tokens: list[int]  # generated token ids, without a final eos or stop token
    finish_reason: FinishReason
    prompt_tokens: int  # bos included
    prefill_seconds: float  # this request's time to its first token: waiting for a slot, then its prompt
    decode_seconds: float  # from its first token to its last
    logprobs: list[TokenLogprob] | None = None  # one per generated token, when the config asked for them

    @property
    def tokens_per_second(self) -> float:
        total = self.prefill_seconds + self.decode_seconds
        return len(self.tokens) / total if total > 0 else 0.0

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "text": self.text, "tokens": self.tokens, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "prefill_seconds": self.prefill_seconds,
                "decode_seconds": self.decode_seconds, "tokens_per_second": self.tokens_per_second,
                "logprobs": None if self.logprobs is None else [asdict(p) for p in self.logprobs]}  # fmt: skip


@dataclass(eq=False)
class Request:
    """One prompt's way through the engine; its handle for the caller (results, streaming, cancelling)."""

    order: int  # arrival order, for first come first served
    index: int  # seeds its sampler with (seed, index): the same tokens however requests are batched
    prompt: str
    prompt_ids: list[int]
    config: GenerationConfig
    tokenizer: object
    sampler: Sampler
    listener: Callable[[Request], None] | None = None  # called after every step that changed it, on the engine's thread
    slot: int | None = None
    prefilled: int = 0  # prompt tokens in its slot
    generated: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)  # of the generated tokens, when the config asks
    finish_reason: FinishReason | None = None
    text_before_stop: str | None = None  # set when a stop string ended it
    cancelled: bool = False
    submitted_at: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def text(self) -> str:
        return self.text_before_stop if self.text_before_stop is not None else self.tokenizer.decode(self.generated)

    def stable_text(self) -> str:
        """The part of the text that later tokens cannot change: no partial UTF-8 character at the end, no suffix
        that might still become a stop string."""
        text = self.text()
        if self.done:
            return text
        text = text.rstrip("\ufffd")  # the decoder's mark for an incomplete multi-byte character
        held = max((n for s in self.config.stop_strings for n in range(len(s), 0, -1) if text.endswith(s[:n])),
                   default=0)  # fmt: skip
        return text[: len(text) - held]

    def result(self) -> GenerationResult:
        first = self.first_token_at or self.finished_at
        logprobs = list(self.logprobs) if self.config.logprobs is not None else None
        return GenerationResult(self.prompt, self.text(), list(self.generated), self.finish_reason,
                                len(self.prompt_ids), first - self.submitted_at, self.finished_at - first,
                                logprobs)  # fmt: skip


class Engine:
    """Schedules requests over one runtime's slots; see the module docstring for what a step does."""

    def __init__(self, runtime: Runtime, prefill_chunk: int = DEFAULT_PREFILL_CHUNK, prefill_budget: int | None = None):
        if runtime.tokenizer is None:
            raise GenerationError("the engine needs a runtime with a tokenizer (it takes text prompts)")
        if prefill_chunk < 1:
            raise GenerationError(f"prefill_chunk must be >= 1, got {prefill_chunk}")
        runtime.reset()
        self.runtime, self.tokenizer = runtime, runtime.tokenizer
        self.prefill_chunk = prefill_chunk
        self.prefill_budget = prefill_budget or prefill_chunk
        self.free_slots = list(range(runtime.info.max_slots))  # a heap: the lowest free slot first
        self.waiting: deque[Request] = deque()
        self.active: list[Request] = []  # requests holding a slot
        self.lock = threading.Lock()  # guards `waiting` and cancellations against other threads
        self.arrivals = itertools.count()

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.active)

    def submit(
        self,
        prompt: str,
        config: GenerationConfig = DEFAULTS,
        index: int = 0,
        listener: Callable[[Request], None] | None = None,
    ) -> Request:
        """Queue a prompt (encoded with bos); raises GenerationError now if it cannot run."""
        if not prompt:
            raise GenerationError(f"prompt {index} is empty")
        ids = self.tokenizer.encode(prompt, bos=True)
        if len(ids) > self.runtime.info.max_seq_len:
            raise GenerationError(f"prompt {index} has {len(ids)} tokens, more than the model's context of "
                                  f"{self.runtime.info.max_seq_len}; shorten it")  # fmt: skip
        request = Request(next(self.arrivals), index, prompt, ids, config, self.tokenizer, Sampler(config, [index]),
                          listener)  # fmt: skip
        with self.lock:
            self.waiting.append(request)
        return request

    def cancel(self, request: Request) -> None:
        """Stop a request at the next step (from any thread); it finishes as "cancelled" and frees its slot."""
        with self.lock:
            request.cancelled = True

    def run(self) -> None:
        """Step until every request has finished."""
        while self.busy:
            self.step()

    def step(self) -> list[Request]:
        """One scheduling round; returns the requests that finished in it."""
        changed: set[Request] = set()
        with self.lock:
            for request in [r for r in self.waiting if r.cancelled]:
                self.waiting.remove(request)
                self._finish(request, "cancelled", changed)
            for request in [r for r in self.active if r.cancelled]:
                self._finish(request, "cancelled", changed)
            self._admit()
        self._prefill(changed)
        self._decode(changed)
        for request in changed:
            if request.listener is not None:
                request.listener(request)
        return [request for request in changed if request.done]

    def _admit(self) -> None:
        """Waiting requests into free slots, first come first served (called holding the lock)."""
        while self.waiting and self.free_slots:
            request = self.waiting.popleft()
            request.slot = heapq.heappop(self.free_slots)
            self.active.append(request)

    def _prefill(self, changed: set[Request]) -> None:
        pending = [r for r in self.active if r.prefilled < len(r.prompt_ids)]
        budget = self.prefill_budget
        for request in sorted(pending, key=lambda r: (len(r.prompt_ids) - r.prefilled, r.order)):
            end = min(len(request.prompt_ids), (request.prefilled // self.prefill_chunk + 1) * self.prefill_chunk)
            if end - request.prefilled > budget and budget < self.prefill_budget:
                break  # this round's budget is spent; the rest waits for the next one
            logits = self.runtime.prefill(request.slot, request.prompt_ids[request.prefilled : end])
            budget -= end - request.prefilled
            request.prefilled = end
            if end == len(request.prompt_ids):
                request.first_token_at = time.perf_counter()
                self._sample(request, logits, changed)

    def _decode(self, changed: set[Request]) -> None:
        ready = [r for r in self.active if r.generated and r.prefilled == len(r.prompt_ids) and not r.done]
        if not ready:
            return
        logits = self.runtime.decode([r.slot for r in ready], [r.generated[-1] for r in ready])
        for request, row in zip(ready, logits, strict=True):
            self._sample(request, row, changed)

    def _sample(self, request: Request, logits, changed: set[Request]) -> None:
        """Draw the next token from the logits after the request's last one, and see whether it ends there."""
        config = request.config
        history = [request.prompt_ids + request.generated] if config.repetition_penalty != 1 else None
        token = request.sampler.sample(logits[None], [request.index], history)[0]
        changed.add(request)
        if token == self.tokenizer.eos_id and not config.ignore_eos:
            return self._finish(request, "eos", changed)
        if token in config.stop_token_ids:
            return self._finish(request, "stop", changed)
        request.generated.append(token)
        if config.logprobs is not None:
            request.logprobs.append(token_logprob(logits, token, config.logprobs))
        if config.stop_strings:
            text = self.tokenizer.decode(request.generated)
            cut = min((i for i in (text.find(s) for s in config.stop_strings) if i >= 0), default=-1)
            if cut >= 0:
                request.text_before_stop = text[:cut]
                return self._finish(request, "stop", changed)
        if len(request.generated) >= config.max_new_tokens:
            return self._finish(request, "length", changed)
        if self.runtime.length(request.slot) + 1 > self.runtime.info.max_seq_len:
            return self._finish(request, "context_full", changed)  # the last token is sampled, never cached
        return None

    def _finish(self, request: Request, reason: FinishReason, changed: set[Request]) -> None:
        request.finish_reason, request.finished_at = reason, time.perf_counter()
        if request.slot is not None:
            self.runtime.free(request.slot)
            heapq.heappush(self.free_slots, request.slot)
            self.active.remove(request)
        changed.add(request)
        request.finished.set()


class EngineLoop:
    """Steps an engine on a thread of its own while requests are waiting or running: what a server or the C API
    uses, so requests from many threads share the slots. Stop it with `close()`."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.wake = threading.Condition()
        self.stopped = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="gptdeploy-engine", daemon=True)
        self.thread.start()

    def submit(self, prompt: str, config: GenerationConfig = DEFAULTS, index: int = 0,
               listener: Callable[[Request], None] | None = None) -> Request:  # fmt: skip
        if self.error is not None:
            raise GenerationError(f"the engine stopped after an error: {self.error}")
        request = self.engine.submit(prompt, config, index, listener)
        with self.wake:
            self.wake.notify()
        return request

    def cancel(self, request: Request) -> None:
        self.engine.cancel(request)
        with self.wake:
            self.wake.notify()

    def _run(self) -> None:
        while True:
            with self.wake:
                while not self.engine.busy and not self.stopped:
                    self.wake.wait()
                if self.stopped:
                    return
            try:
                self.engine.step()
            except BaseException as error:  # a runtime failure ends every request; callers see it, none hangs
                self.error = error
                self._end_everything("error")
                return

    def _end_everything(self, reason: FinishReason) -> None:
        engine = self.engine
        with engine.lock:
            requests = [*engine.waiting, *engine.active]
            engine.waiting.clear()
        for request in requests:
            request.finish_reason, request.finished_at = reason, time.perf_counter()
            request.finished.set()
            if request.listener is not None:
                request.listener(request)

    def close(self) -> None:
        """Stop stepping; requests still waiting or running end as "cancelled"."""
        with self.wake:
            self.stopped = True
            self.wake.notify()
        self.thread.join()
        self._end_everything("cancelled")
