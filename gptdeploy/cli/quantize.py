"""`gptdeploy quantize`: add an int8, int8-static, fp16 or int4 graph to a bundle, checked against its budget."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import describe_parity, emit

PRECISIONS = ("int8", "int8-static", "fp16", "int4")


@click.command("quantize")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--precision",
    required=True,
    type=click.Choice(PRECISIONS),
    help="int8: dynamic (ONNX Runtime CPU); int8-static: calibrated QDQ (TensorRT); fp16; int4 weight-only.",
)
@click.option("--from", "source", default="onnx-fp32", show_default=True, help="The fp32 artifact to start from.")
@click.option("--name", help="Name of the new artifact (default: onnx-<precision>).")
@click.option(
    "--io-dtype",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="fp16 only: dtype of the logits and KV cache at the graph's boundary.",
)
@click.option("--force", is_flag=True, help="Replace an artifact of the same name.")
@click.option(
    "--tasks/--no-tasks",
    default=None,
    help="Hold held-out task accuracy to the budget (default: if the bundle recorded PyTorch's).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")  # fmt: skip
def quantize_command(bundle, precision, source, name, io_dtype, force, tasks, as_json) -> None:
    """Add a quantized graph to a bundle; it is kept only if parity and task accuracy stay within the budget.

    When int8 misses the budget, the most sensitive layers are kept in fp32 until it passes; the manifest records
    which and why.

    Example: gptdeploy quantize runs/demo/bundle --precision int8
    """
    from gptdeploy.export.quantize import quantize_bundle

    result = quantize_bundle(bundle, precision, source=source, name=name, io_dtype=io_dtype, force=force, tasks=tasks)
    details = result.artifact.details
    data = {"bundle": str(result.bundle), "artifact": result.artifact.name, "precision": result.artifact.precision,
            "scheme": details["scheme"], "size_bytes": details["size_bytes"],
            "source_size_bytes": details["source_size_bytes"], "parity": result.parity.to_dict(),
            "accuracy": result.accuracy, "kept_fp32": result.kept_fp32, "steps": result.steps}  # fmt: skip
    emit(data, as_json, describe_result)


def describe_result(data: dict) -> str:
    lines = [
        f"added {data['artifact']} ({data['precision']}, {data['scheme']}) to {data['bundle']}: "
        f"{data['size_bytes'] / 1e6:.2f} MB on disk (source {data['source_size_bytes'] / 1e6:.2f} MB)",
        describe_parity([data["parity"]]),
    ]
    if data["accuracy"]:
        lines.append(f"task accuracy {data['accuracy']['onnxruntime']:.1%} (PyTorch {data['accuracy']['torch']:.1%})")
    if data["kept_fp32"]:
        lines.append(f"kept in fp32 by the guardrail: {', '.join(data['kept_fp32'])} ({len(data['steps'])} steps)")
    return "\n".join(lines)
