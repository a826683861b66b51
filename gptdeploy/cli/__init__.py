"""`gptdeploy <verb>`: each command parses its options, calls one library function and renders text or --json.

Results go to stdout, progress to stderr. A `GptDeployError` becomes `Error: ...` and exit code 1, in one place.
The commands live in one module per area; this module is the group that holds them.
"""

from __future__ import annotations

import logging
import sys

import click

from gptdeploy import __version__
from gptdeploy.cli.bundles import export_command, inspect_command, optimize_command, parity_command
from gptdeploy.cli.capi import capi_group
from gptdeploy.cli.engines import build_engine_command, check_command
from gptdeploy.cli.interop import export_gguf_command, export_hf_command, import_hf_command
from gptdeploy.cli.quantize import quantize_command
from gptdeploy.cli.running import chat_command, generate_command
from gptdeploy.cli.training import (
    data_command,
    demo_command,
    evaluate_command,
    finetune_command,
    plot_command,
    train_command,
)
from gptdeploy.errors import GptDeployError


class TranslatingGroup(click.Group):
    """Turns library errors into one-line CLI errors instead of tracebacks."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GptDeployError as error:
            raise click.ClickException(str(error)) from error


@click.group(cls=TranslatingGroup)
@click.version_option(__version__, prog_name="gptdeploy")
def main() -> None:
    """Train a small GPT, export it, and run it on PyTorch, ONNX Runtime and TensorRT behind one API."""
    show_progress_logs()


def show_progress_logs() -> None:
    """The library logs its steps; the CLI shows them on stderr so long commands report what they are doing."""
    library_log = logging.getLogger("gptdeploy")
    if not library_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        library_log.addHandler(handler)
        library_log.setLevel(logging.INFO)


COMMANDS = [
    data_command, train_command, finetune_command, evaluate_command, plot_command, demo_command,
    generate_command, chat_command,
    export_command, optimize_command, quantize_command, inspect_command, parity_command,
    build_engine_command, check_command, capi_group, import_hf_command, export_hf_command, export_gguf_command,
]  # fmt: skip
for command in COMMANDS:
    main.add_command(command)
