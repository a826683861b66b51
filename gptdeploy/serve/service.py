"""The model behind the server: it loads the runtime on a thread of its own (the server answers /health and 503s
meanwhile), runs the engine in an `EngineLoop`, refuses work it cannot take (not ready, draining, queue full,
prompt too long), and turns a request's progress on the engine thread into updates an asyncio caller awaits.
It knows nothing about HTTP: app.py maps its errors to status codes and its updates to the OpenAI format.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

from gptdeploy.chat_template import ChatTemplate
from gptdeploy.engine import DEFAULT_PREFILL_CHUNK, Engine, EngineLoop, GenerationConfig, Request, TokenLogprob
from gptdeploy.errors import GenerationError, ServerError
from gptdeploy.runtimes.base import Runtime
from gptdeploy.serve.metrics import Metrics

logger = logging.getLogger(__name__)

FINISH_REASONS = {"eos": "stop", "stop": "stop", "length": "length", "context_full": "length"}  # engine -> OpenAI


class NotReadyError(ServerError):
    """The model is still loading, failed to load, or the server is draining: 503."""


class QueueFullError(ServerError):
    """More requests wait for a slot than the server queues: 429."""


class ContextLengthError(GenerationError):
    """The prompt (with the tokens asked for) does not fit the model's context: 400 context_length_exceeded."""


@dataclass(frozen=True)
class Update:
    """What one choice gained since its last update."""

    index: int  # the choice: its position among the requests submitted together
    text: str  # new text, final (never cut inside a character or a possible stop string)
    logprobs: list[TokenLogprob]  # of the tokens generated since the last update
    finish_reason: str | None  # stop | length when it ended; cancelled | error when it failed


@dataclass
class Progress:
    """How much of one request its follower has passed on."""

    index: int
    request: Request
    characters: int = 0  # of its text
    tokens: int = 0
    seen_at: float | None = None  # when the last new tokens were seen


class Service:
    """One model served: a runtime, its engine loop and chat template, and the limits on what it accepts."""

    def __init__(self, loader: Callable[[], Runtime], model_name: str, max_queue: int = 256,
                 prefill_chunk: int = DEFAULT_PREFILL_CHUNK):  # fmt: skip
        self.loader, self.model_name, self.max_queue = loader, model_name, max_queue
        self.prefill_chunk = prefill_chunk
        self.metrics = Metrics()
        self.state = "idle"  # idle -> loading -> ready -> draining, or loading -> failed
        self.load_error: BaseException | None = None
        self.on_load_failure: Callable[[BaseException], None] | None = None
        self.runtime: Runtime | None = None
        self.engine_loop: EngineLoop | None = None
        self.template: ChatTemplate | None = None
        self.loaded = threading.Event()

    def start(self, wait: bool = False) -> None:
        """Load the model on a thread (once); `wait` blocks until it is loaded and raises if loading failed."""
        if self.state == "idle":
            self.state = "loading"
            threading.Thread(target=self._load, name="gptdeploy-load", daemon=True).start()
        if wait:
            self.loaded.wait()
            if self.load_error is not None:
                raise self.load_error

    def _load(self) -> None:
        try:
            runtime = self.loader()
            template = ChatTemplate(runtime.tokenizer)
            engine = Engine(runtime, self.prefill_chunk)
        except BaseException as error:
            self.load_error, self.state = error, "failed"
            logger.error("cannot load the model: %s", error)
            if self.on_load_failure is not None:
                self.on_load_failure(error)
        else:
            self.runtime, self.template = runtime, template
            self.engine_loop = EngineLoop(engine)
            self.metrics.watch(engine)
            if self.state == "loading":
                self.state = "ready"
            logger.info("serving %s on %s/%s with %d slots", self.model_name, runtime.info.backend,
                        runtime.info.device, runtime.info.max_slots)  # fmt: skip
        self.loaded.set()

    def drain(self) -> None:
        """Take no new requests; those in flight go on."""
        self.state = "draining"

    def close(self) -> None:
        """Stop the engine (requests still running end as cancelled) and release the runtime."""
        if self.engine_loop is not None:
            self.engine_loop.close()
        if self.runtime is not None:
            self.runtime.close()

    @property
    def context_length(self) -> int | None:
        return self.runtime.info.max_seq_len if self.runtime is not None else None

    def check_ready(self) -> None:
        """Raise NotReadyError saying why the service takes no requests now."""
        if self.state == "ready" and self.engine_loop.error is not None:
            raise NotReadyError(f"the engine stopped after an error: {self.engine_loop.error}")
        reasons = {
            "idle": "the model is not loaded yet",
            "loading": "the model is still loading",
            "draining": "the server is shutting down",
            "failed": f"the model failed to load: {self.load_error}",
        }
        if self.state != "ready":
            raise NotReadyError(reasons[self.state])

    def submit(
        self, prompts: Sequence[str], config: GenerationConfig, n: int = 1, max_tokens: int | None = None
    ) -> tuple[list[Request], asyncio.Event]:
        """Queue `n` choices of each prompt (call it on the event loop); returns the requests, prompt-major, and the
        event the engine sets whenever one of them changes. Choice j of a prompt samples with the seed (seed, j), as
        `generate(runtime, [prompt] * n, config)` does. `max_tokens` None: up to the end of the context."""
        self.check_ready()
        waiting = len(self.engine_loop.engine.waiting)
        if waiting + len(prompts) * n > self.max_queue:
            raise QueueFullError(f"{waiting} requests are waiting for a slot, the most this server queues is "
                            f"{self.max_queue}; retry later")  # fmt: skip
        configs = [replace(config, max_new_tokens=self._max_new_tokens(prompt, max_tokens)) for prompt in prompts]
        event_loop, wake = asyncio.get_running_loop(), asyncio.Event()

        def changed(_: Request) -> None:  # on the engine's thread
            with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is waiting any more
                event_loop.call_soon_threadsafe(wake.set)

        requests: list[Request] = []
        try:
            for prompt, prompt_config in zip(prompts, configs, strict=True):
                requests += [self.engine_loop.submit(prompt, prompt_config, j, changed) for j in range(n)]
        except BaseException:
            for request in requests:
                self.engine_loop.cancel(request)
            raise
        self.metrics.prompt_tokens.inc(sum(len(r.prompt_ids) for r in requests[::n]))
        return requests, wake

    def _max_new_tokens(self, prompt: str, max_tokens: int | None) -> int:
        if not prompt:
            raise GenerationError("prompt is empty")
        context = self.runtime.info.max_seq_len
        length = len(self.runtime.tokenizer.encode(prompt, bos=True))
        if length + (max_tokens or 1) > context:
            asked = f" + {max_tokens} to generate" if max_tokens else ", with no room for a token"
            raise ContextLengthError(f"this model's context is {context} tokens; the prompt has {length}{asked}; "
                                        "shorten the prompt or ask for fewer tokens")  # fmt: skip
        return max_tokens or context - length

    async def follow(self, requests: list[Request], wake: asyncio.Event) -> AsyncIterator[Update]:
        """Updates of the requests as they generate, until every one has ended. Leaving early (the client went
        away) cancels those still running, which frees their slots at the engine's next step."""
        running = [Progress(index, request) for index, request in enumerate(requests)]
        try:
            while running:
                await wake.wait()
                wake.clear()
                for progress in list(running):
                    update = self._update(progress)
                    if update is not None and update.finish_reason is not None:
                        running.remove(progress)
                    if update is not None:
                        yield update
        finally:
            for progress in running:
                self.engine_loop.cancel(progress.request)
                self.metrics.finished.labels("cancelled").inc()

    def _update(self, progress: Progress) -> Update | None:
        """What the request gained since `progress` last saw it (None: nothing yet)."""
        request = progress.request
        done = request.done  # read first: a request seen done has its final text below
        text = request.text() if done else request.stable_text()
        count = len(request.generated)
        self._observe_tokens(progress, count)
        logprobs = request.logprobs[progress.tokens : count] if request.config.logprobs is not None else []
        new_text = text[progress.characters :]
        progress.characters, progress.tokens = len(text), count
        if done:
            reason = FINISH_REASONS.get(request.finish_reason, request.finish_reason)
            self.metrics.finished.labels(reason).inc()
            return Update(progress.index, new_text, logprobs, reason)
        return Update(progress.index, new_text, logprobs, None) if new_text or logprobs else None

    def _observe_tokens(self, progress: Progress, count: int) -> None:
        """Token counts and latencies: the first token's time from the engine's clock, the gaps after it as this
        loop sees the tokens arrive (several at once share the gap)."""
        new = count - progress.tokens
        if new <= 0:
            return
        now = time.perf_counter()
        self.metrics.generated_tokens.inc(new)
        if progress.seen_at is None:
            self.metrics.time_to_first_token.observe(progress.request.first_token_at - progress.request.submitted_at)
        else:
            for _ in range(new):
                self.metrics.inter_token.observe((now - progress.seen_at) / new)
        progress.seen_at = now
