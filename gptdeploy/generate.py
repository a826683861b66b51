"""`generate()` and `stream()`: the library's way to complete prompts on any `Runtime`, whatever backend computes
the logits. Both are thin: they run an `Engine` (gptdeploy/engine.py, where scheduling, sampling, stopping and
streaming live) in the caller's thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from gptdeploy.engine import DEFAULTS, Engine, FinishReason, GenerationConfig, GenerationResult
from gptdeploy.errors import GenerationError
from gptdeploy.runtimes.base import Runtime
from gptdeploy.validation import checked_arguments

__all__ = ["FinishReason", "GenerationConfig", "GenerationResult", "generate", "stream"]


@overload
def generate(runtime: Runtime, prompts: str, config: GenerationConfig = ...) -> GenerationResult: ...
@overload
def generate(runtime: Runtime, prompts: Sequence[str], config: GenerationConfig = ...) -> list[GenerationResult]: ...
@checked_arguments(GenerationError)
def generate(runtime: Runtime, prompts: str | Sequence[str], config: GenerationConfig = DEFAULTS):
    """Complete one prompt (returns one result) or several (a list, in order). Prompts run together as the
    runtime's slots allow; more than its slots take the next free one. Prompt i samples with the seed (seed, i),
    so a prompt gets the same tokens in any batch."""
    if isinstance(prompts, str):
        return generate(runtime, [prompts], config)[0]
    if not prompts:
        raise GenerationError("no prompts given")
    engine = Engine(runtime)
    requests = [engine.submit(prompt, config, index) for index, prompt in enumerate(prompts)]
    engine.run()
    return [request.result() for request in requests]


@checked_arguments(GenerationError)
def stream(runtime: Runtime, prompt: str, config: GenerationConfig = DEFAULTS) -> Iterator[str]:
    """Yield the completion of one prompt as text pieces as soon as they are final; joined, they equal
    `generate(runtime, prompt, config).text`. A piece never ends inside a multi-byte character."""
    engine = Engine(runtime)
    request = engine.submit(prompt, config)
    emitted = 0
    while not request.done:
        engine.step()
        text = request.stable_text()
        if len(text) > emitted:
            yield text[emitted:]
            emitted = len(text)
