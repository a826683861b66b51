"""Conversations -> prompts: the model's chat template (Jinja text in its `tokenizer_config.json`, Hugging Face's
`chat_template` convention) rendered in jinja2's sandbox, since a template comes with a downloaded model and must
not reach Python's internals. `gptdeploy chat` and the server's /v1/chat/completions both go through here.

Templates see `messages` (dicts with `role` and `content`), `add_generation_prompt`, `bos_token`, `eos_token`,
`pad_token`, and the helpers Hugging Face templates call (`raise_exception`, `strftime_now`). The engine puts bos
in front of every prompt itself, so a bos the template writes first is taken off again (Llama's templates do).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from gptdeploy.errors import GenerationError, TokenizerError
from gptdeploy.tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


class ChatTemplate:
    """One model's template, compiled once; `render` turns a conversation into the prompt text the model expects."""

    def __init__(self, tokenizer: Tokenizer, source: str | None = None):
        """`source`: Jinja text to use instead of the tokenizer's own template."""
        self.tokenizer = tokenizer
        self.source = source if source is not None else tokenizer.chat_template
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        try:
            self.template = environment.from_string(self.source)
        except TemplateError as error:
            raise TokenizerError(f"the chat template is not valid Jinja: {error}") from error

    def render(self, messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
        """The prompt for `messages` (without the bos the engine adds); raises GenerationError for a malformed
        conversation or one the template refuses."""
        messages = check_messages(messages)
        special = {f"{role}_token": text for role, text in self.tokenizer.special_tokens.items()}
        try:
            prompt = self.template.render(messages=messages, add_generation_prompt=add_generation_prompt, **special)
        except TemplateError as error:
            raise GenerationError(f"the chat template refused the conversation: {error}") from error
        prompt = prompt.removeprefix(special["bos_token"])
        if not prompt:
            raise GenerationError("the chat template made an empty prompt of the conversation")
        return prompt

    def prompt_tokens(self, messages: Sequence[dict]) -> int:
        return len(self.tokenizer.encode(self.render(messages), bos=True))

    def fit(self, messages: Sequence[dict], max_prompt_tokens: int) -> list[dict]:
        """The conversation without its oldest turns (system messages stay) until its prompt has at most
        `max_prompt_tokens` tokens: how a chat goes on once the context is full. Raises GenerationError when even
        the last message alone is too long."""
        messages = list(messages)
        while (length := self.prompt_tokens(messages)) > max_prompt_tokens:
            turns = [i for i, m in enumerate(messages) if m["role"] != "system"]
            if len(turns) <= 1:
                raise GenerationError(f"the last message makes a prompt of {length} tokens, more than the "
                                      f"{max_prompt_tokens} that leave room for the answer; shorten it")  # fmt: skip
            first = turns[0]
            end = next((i for i in turns[1:] if messages[i]["role"] == "user"), turns[-1])
            del messages[first:end]  # the oldest turn: a question and its answers
        return messages


def check_messages(messages: object) -> list[dict]:
    """Messages as templates take them: role and text content. OpenAI's list-of-parts content is joined when every
    part is text."""
    if not isinstance(messages, list | tuple) or not messages:
        raise GenerationError("messages must be a non-empty list of {role, content} objects")
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise GenerationError(f"messages[{index}].role must be one of {', '.join(ROLES)}, got "
                                  f"{message.get('role') if isinstance(message, dict) else message!r:.40}")  # fmt: skip
        content = message.get("content")
        if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            content = "".join(str(part.get("text", "")) for part in content)
        if not isinstance(content, str):
            raise GenerationError(f"messages[{index}].content must be text, got {type(content).__name__}")
        checked.append({"role": message["role"], "content": content})
    return checked
