"""Commands that run a model: generate and chat, on any backend."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click

from gptdeploy.cli.common import backend_options, generation_config, generation_options


@click.command("generate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-p", "--prompt", "prompts", multiple=True, required=True, help="Prompt text (repeat for a batch).")
@backend_options
@generation_options
@click.option("--stream", is_flag=True, help="Print text as it is generated.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
def generate_command(model, prompts, backend, device, precision, artifact, max_slots, stream, as_json,
                     **settings) -> None:  # fmt: skip
    """Complete prompts with a checkpoint or bundle on any backend.

    Example: gptdeploy generate runs/demo/finetune -p $'Q: What is 12 plus 30?\\nA:'
    """
    from gptdeploy.generate import generate
    from gptdeploy.generate import stream as stream_text
    from gptdeploy.runtimes.base import load_runtime

    if stream and as_json:
        raise click.UsageError("--stream and --json exclude each other")
    config = generation_config(**settings)
    with load_runtime(model, backend, device, precision, max_slots, artifact) as runtime:
        if stream:
            for prompt in prompts:
                for piece in stream_text(runtime, prompt, config):
                    click.echo(piece, nl=False)
                click.echo()
            return
        results = generate(runtime, list(prompts), config)
    if as_json:
        click.echo(json.dumps({"results": [r.to_dict() for r in results]}, indent=2, ensure_ascii=False))
        return
    for result in results:
        click.echo(result.text)
        click.echo(
            f"[{len(result.tokens)} tokens, {result.finish_reason}, {result.tokens_per_second:,.0f} tokens/s]", err=True
        )


@click.command("chat")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--system", help="A system message that opens the conversation.")
@click.option("--chat-template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A Jinja chat template file to use instead of the model's own.")  # fmt: skip
@backend_options
@generation_options
def chat_command(model, system, chat_template, backend, device, precision, artifact, max_slots, **settings) -> None:
    """Type a line, read the model's streamed answer; an empty line or end of input quits. The model's chat
    template turns the conversation so far into its prompt; the oldest turns go when it outgrows the context.

    Example: gptdeploy chat runs/demo/finetune
    """
    from gptdeploy.chat_template import ChatTemplate
    from gptdeploy.errors import GenerationError
    from gptdeploy.generate import stream
    from gptdeploy.runtimes.base import load_runtime

    config = generation_config(**settings)
    with load_runtime(model, backend, device, precision, max_slots, artifact) as runtime:
        template = ChatTemplate(runtime.tokenizer, chat_template.read_text(encoding="utf-8") if chat_template else None)
        room = runtime.info.max_seq_len - config.max_new_tokens
        if room < 1:
            raise GenerationError(f"--max-new-tokens {config.max_new_tokens} leaves no room for a prompt in the "
                                  f"model's context of {runtime.info.max_seq_len}; lower it")  # fmt: skip
        messages = [{"role": "system", "content": system}] if system else []
        click.echo(f"chatting with {model} on {runtime.info.backend}/{runtime.info.device}; empty line quits", err=True)
        for line in typed_lines():
            messages = template.fit([*messages, {"role": "user", "content": line}], room)
            answer = ""
            for piece in stream(runtime, template.render(messages), config):
                click.echo(piece, nl=False)
                answer += piece
            click.echo()
            messages.append({"role": "assistant", "content": answer})


def typed_lines() -> Iterator[str]:
    """Lines from the user until an empty line or the end of input (Ctrl-D), which both end the chat quietly."""
    from gptdeploy.errors import GenerationError

    while True:
        try:
            line = click.prompt("", prompt_suffix="> ", default="", show_default=False, err=True).strip()
        except click.exceptions.Abort:
            return
        except UnicodeDecodeError as error:
            raise GenerationError(f"the line read is not valid UTF-8 (byte 0x{error.object[error.start]:02x} at "
                                  f"{error.start}: {error.reason}); type UTF-8 text") from error  # fmt: skip
        if not line:
            return
        yield line
