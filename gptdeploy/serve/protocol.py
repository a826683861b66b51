"""The OpenAI wire format: request bodies (pydantic models, so a wrong type is a 400 naming the field) turned into a
`GenerationConfig`, and the engine's updates turned into response bodies and stream chunks.

Beyond OpenAI's fields, requests take our sampler's `top_k`, `min_p`, `repetition_penalty` and `ignore_eos`.
Fields OpenAI has and we cannot honour (echo, best_of, penalties, logit_bias, tools) are refused when set, never
silently ignored.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gptdeploy.engine import GenerationConfig, TokenLogprob
from gptdeploy.errors import GenerationError
from gptdeploy.serve.service import Update

TokenText = Callable[[int], str]


class StreamOptions(BaseModel):
    include_usage: bool = False


class GenerationRequest(BaseModel):
    """What /v1/completions and /v1/chat/completions share."""

    model_config = ConfigDict(extra="ignore")

    model: str
    n: int = Field(1, ge=1, le=16)
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = Field(None, ge=0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False

    def refused(self) -> dict[str, bool]:
        """Fields set to something this server cannot do -> True."""
        return {"presence_penalty": self.presence_penalty != 0, "frequency_penalty": self.frequency_penalty != 0,
                "logit_bias": bool(self.logit_bias)}  # fmt: skip

    def config(self, logprobs: int | None) -> GenerationConfig:
        """The engine's settings; max_new_tokens is the service's to set. A random seed when none is given, as
        OpenAI samples differently each time."""
        for field, set_ in self.refused().items():
            if set_:
                raise FieldError(field, f"{field} is not supported by this server; leave it unset")
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        if len(stop) > 4:
            raise FieldError("stop", f"stop takes at most 4 sequences, got {len(stop)}")
        try:
            return GenerationConfig(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                                    min_p=self.min_p, repetition_penalty=self.repetition_penalty,
                                    seed=secrets.randbelow(2**31) if self.seed is None else self.seed,
                                    stop_strings=tuple(stop), ignore_eos=self.ignore_eos,
                                    logprobs=logprobs)  # fmt: skip
        except GenerationError as error:
            first_word = str(error).split()[0]
            raise FieldError(first_word if first_word in type(self).model_fields else None, str(error)) from error

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(GenerationRequest):
    prompt: str | list[str]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    def refused(self) -> dict[str, bool]:
        return {**super().refused(), "echo": self.echo, "best_of": self.best_of not in (None, 1),
                "suffix": bool(self.suffix)}  # fmt: skip

    @property
    def prompts(self) -> list[str]:
        prompts = [self.prompt] if isinstance(self.prompt, str) else self.prompt
        if not prompts:
            raise FieldError("prompt", "prompt must be text or a non-empty list of texts")
        return prompts


class ChatRequest(GenerationRequest):
    messages: list[Any]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[Any] | None = None

    def refused(self) -> dict[str, bool]:
        return {**super().refused(), "tools": bool(self.tools)}

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def logprobs_count(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise FieldError("top_logprobs", "top_logprobs needs logprobs set to true")
        return (self.top_logprobs or 0) if self.logprobs else None


class FieldError(GenerationError):
    """A request field with a value this server refuses: 400 naming it."""

    def __init__(self, param: str | None, message: str):
        super().__init__(message)
        self.param = param


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}  # fmt: skip


# --- completions -------------------------------------------------------------------------------------------------


def completion_logprobs(logprobs: list[TokenLogprob], token_text: TokenText, offset: int = 0) -> dict:
    tokens = [token_text(p.token) for p in logprobs]
    offsets = [offset + sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    top = [{token_text(t): lp for t, lp in p.top} for p in logprobs]
    return {"tokens": tokens, "token_logprobs": [p.logprob for p in logprobs], "top_logprobs": top,
            "text_offset": offsets}  # fmt: skip


def completion_chunk(id_: str, model: str, update: Update, token_text: TokenText | None) -> dict:
    logprobs = completion_logprobs(update.logprobs, token_text) if token_text else None
    return {"id": id_, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"index": update.index, "text": update.text, "logprobs": logprobs,
                         "finish_reason": update.finish_reason}]}  # fmt: skip


def completion_body(id_: str, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": id_, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage_}  # fmt: skip


# --- chat completions --------------------------------------------------------------------------------------------


def chat_logprobs(logprobs: list[TokenLogprob], token_text: TokenText) -> dict:
    def entry(token: int, logprob: float) -> dict:
        text = token_text(token)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8"))}

    return {"content": [{**entry(p.token, p.logprob), "top_logprobs": [entry(t, lp) for t, lp in p.top]}
                        for p in logprobs], "refusal": None}  # fmt: skip


def chat_chunk(id_: str, model: str, index: int, delta: dict, finish_reason: str | None, logprobs: dict | None) -> dict:
    choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
    return {"id": id_, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [choice]}  # fmt: skip


def chat_body(id_: str, model: str, choices: list[dict], usage_: dict) -> dict:
    return {"id": id_, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": usage_}  # fmt: skip


def usage_chunk(id_: str, model: str, object_: str, usage_: dict) -> dict:
    """The last chunk of a stream with `stream_options.include_usage`: no choices, the whole request's usage."""
    return {"id": id_, "object": object_, "created": int(time.time()), "model": model, "choices": [], "usage": usage_}
