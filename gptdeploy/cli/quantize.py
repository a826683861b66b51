"""`gptdeploy quantize`: lower-precision variants of a bundle's graph, each kept only within its budget."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import emit_stage, stage_options
from gptdeploy.export.quantize import SCHEMES


@click.command("quantize")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--precision",
    required=True,
    type=click.Choice(list(SCHEMES)),
    help="int8: dynamic (ONNX Runtime CPU); int8-static: calibrated QDQ (TensorRT); fp16; int4 weight-only.",
)
@click.option("--name", help="Name of the new artifact (default: onnx-<precision>).")
@click.option(
    "--io-dtype",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="fp16 only: dtype of the logits and KV cache at the graph's boundary.",
)
@stage_options()
def quantize_command(bundle, precision, name, io_dtype, source, force, tasks, as_json) -> None:
    """Add a quantized graph to a bundle; every precision is kept only if parity and task accuracy stay within its
    budget (gptdeploy/parity.py TOLERANCES).

    When int8, int8-static or int4 misses its budget, the most sensitive layers are kept in fp32 until it passes;
    the manifest records which and why. fp16 has no such fallback: it passes as a whole or is not added.

    Example: gptdeploy quantize runs/demo/bundle --precision int8
    """
    from gptdeploy.export.quantize import quantize_bundle

    result = quantize_bundle(bundle, precision, source, name, io_dtype, force, tasks)
    emit_stage(result, as_json)
