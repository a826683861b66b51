"""TensorRT commands: build an engine on the target machine, and the pre-flight check that runs anywhere."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import emit, emit_stage, stage_options


@click.command("build-engine")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--precision",
    default="fp32",
    show_default=True,
    help="Build from the first ONNX artifact of this precision; the graph's types are the engine's types.",
)
@click.option("--max-seq", type=int, help="Longest prompt + generation it serves (default: the model's context).")
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TensorRT's kernel timing cache: read if it exists, written after the build.",
)
@click.option("--workspace", type=int, help="Cap on TensorRT's scratch memory in MiB (default: TensorRT's).")
@click.option("--device", default="cuda:0", show_default=True, help="The GPU to build for.")
@stage_options(source=None)
def build_engine_command(bundle, precision, max_seq, timing_cache, workspace, device, source, force, tasks,
                         as_json) -> None:  # fmt: skip
    """Build a TensorRT engine for this machine's GPU into BUNDLE; added only if it passes parity.

    Example: gptdeploy build-engine runs/demo/bundle --timing-cache ~/.cache/gptdeploy.timing
    """
    from gptdeploy.export.tensorrt_build import build_engine

    result = build_engine(bundle, source, precision, max_seq, timing_cache,
                          workspace * 2**20 if workspace else None, device, force, tasks)  # fmt: skip
    emit_stage(result, as_json)


@click.command("check")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--target",
    type=click.Choice(["tensorrt"]),
    default="tensorrt",
    show_default=True,
    help="The runtime the graphs must import into.",
)
@click.option(
    "--trt-version",
    help="TensorRT release to check for, e.g. 10.3 (JetPack 6) or 11.0 (default: the installed one, else 10.15).",
)
@click.option("--artifact", help="Check only this artifact (default: every ONNX artifact).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
def check_command(bundle, target, trt_version, artifact, as_json) -> None:
    """Check a bundle's ONNX graphs against what TensorRT's parser supports, without TensorRT; exit 1 on problems.

    Static: op types, domains and opsets, the types each op sees, documented restrictions, shape-tensor inputs
    and external weights. Example: gptdeploy check runs/demo/bundle --target tensorrt --trt-version 10.3
    """
    from gptdeploy.export.preflight import check_bundle

    result = check_bundle(bundle, target, trt_version, artifact)
    emit(result.to_dict(), as_json, describe_check)
    if not result:
        click.get_current_context().exit(1)  # the report is the message; no "Error:" line


def describe_check(data: dict) -> str:
    lines = [f"{data['bundle']} for TensorRT {data['trt_version']}:"]
    for graph in data["graphs"]:
        verdict = "ok" if graph["passed"] else "FAIL"
        lines.append(f"  {graph['artifact']} (opset {graph['opset']}): {verdict}, {graph['errors']} errors, "
                     f"{graph['warnings']} warnings, {graph['int64_tensors']} int64 tensors")  # fmt: skip
        for finding in graph["findings"]:
            where = f" {finding['op_type']} {finding['node']!r}:" if finding["node"] else ""
            lines.append(f"    {finding['severity']:<7} {finding['code']:<14}{where} {finding['message']}")
    return "\n".join(lines)
