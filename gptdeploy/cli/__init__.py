"""`gptdeploy <verb>`: each command parses its options, calls one library function and renders text or --json.

Results go to stdout, progress to stderr. Every failure becomes one `Error: ...` line and exit code 1, in one
place (`TranslatingGroup`): a `GptDeployError` says what was wrong and the fix; anything else is a bug in gptdeploy
and says so. No traceback is printed unless `gptdeploy --debug` asks for one. The commands live in one module per
area; this module is the group that holds them.
"""

from __future__ import annotations

import logging
import sys
import traceback

import click

from gptdeploy import __version__
from gptdeploy.cli.bundles import export_command, inspect_command, optimize_command, parity_command
from gptdeploy.cli.capi import capi_group
from gptdeploy.cli.encoders import attention_command, classify_command, fill_mask_command
from gptdeploy.cli.engines import build_engine_command, check_command
from gptdeploy.cli.interop import export_gguf_command, export_hf_command, import_hf_command
from gptdeploy.cli.quantize import quantize_command
from gptdeploy.cli.running import chat_command, generate_command
from gptdeploy.cli.serving import serve_command
from gptdeploy.cli.training import (
    data_command,
    demo_command,
    evaluate_command,
    finetune_command,
    plot_command,
    train_command,
)
from gptdeploy.errors import GptDeployError

# The extra that installs each optional library (pyproject.toml); the core install runs bundles without them.
OPTIONAL_MODULES = {"torch": "train", "onnxscript": "train", "onnx_ir": "train",
                    "matplotlib": "train", "tensorrt": "gpu", "cffi": "capi", "gguf": "gguf", "fastapi": "serve",
                    "uvicorn": "serve", "prometheus_client": "serve", "ray": "ray"}  # fmt: skip


class TranslatingGroup(click.Group):
    """Turns every error into one `Error: ...` line instead of a traceback (kept with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except GptDeployError as error:
            if ctx.params.get("debug"):
                traceback.print_exc()
            raise click.ClickException(one_line(str(error))) from error
        except ModuleNotFoundError as error:
            extra = OPTIONAL_MODULES.get((error.name or "").split(".")[0])
            if extra is None or ctx.params.get("debug"):
                raise
            raise click.ClickException(f"`gptdeploy {ctx.invoked_subcommand}` needs {error.name}, which this install "
                                       f"lacks: pip install 'gptdeploy[{extra}]'") from error  # fmt: skip
        except MemoryError as error:
            raise click.ClickException("out of memory; choose a smaller model, batch or context") from error
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            raise click.ClickException(f"unexpected {type(error).__name__}: {one_line(str(error))} (a bug in "
                                       "gptdeploy: rerun with `gptdeploy --debug ...` for the traceback and report "
                                       "it)") from error  # fmt: skip


def one_line(message: str) -> str:
    return " ".join(message.split())


@click.group(cls=TranslatingGroup)
@click.version_option(__version__, prog_name="gptdeploy")
@click.option("--debug", is_flag=True, help="Show the traceback of an error (and let unexpected ones through).")
def main(debug: bool) -> None:
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
    generate_command, chat_command, serve_command, attention_command, fill_mask_command, classify_command,
    export_command, optimize_command, quantize_command, inspect_command, parity_command,
    build_engine_command, check_command, capi_group, import_hf_command, export_hf_command, export_gguf_command,
]  # fmt: skip
for command in COMMANDS:
    main.add_command(command)
