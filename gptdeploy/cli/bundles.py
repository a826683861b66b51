"""Commands that make and check bundles: export, optimize, inspect, parity."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import describe_parity, emit


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", "bundle", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--opset", default=18, show_default=True, help="ONNX opset of the graph.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--tasks/--no-tasks", default=None,
              help="Require equal held-out task accuracy (default: if tuned on the shipped tasks).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def export_command(checkpoint, bundle, opset, force, tasks, as_json) -> None:
    """Export a checkpoint to a self-verifying ONNX bundle; fails if ONNX Runtime does not match PyTorch.

    Example: gptdeploy export runs/demo/finetune -o runs/demo/bundle
    """
    from gptdeploy.export.pipeline import export_bundle

    result = export_bundle(checkpoint, bundle, opset=opset, force=force, tasks=tasks)
    data = {"bundle": str(result.bundle), "artifact": result.artifact.name, "parity": result.parity.to_dict(),
            "accuracy": result.accuracy}  # fmt: skip
    emit(data, as_json, lambda d: f"wrote {d['bundle']}\n" + describe_parity([d["parity"]]))


@click.command("optimize")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--target",
    type=click.Choice(["onnxruntime", "tensorrt"]),
    default="onnxruntime",
    show_default=True,
    help="onnxruntime: contrib operators (MultiHeadAttention, SkipLayerNormalization, ...); tensorrt: the "
    "standard opset-23 Attention.",
)
@click.option("--from", "source", default="onnx-fp32", show_default=True, help="The fp32 artifact to fuse.")
@click.option("--force", is_flag=True, help="Rebuild the fused artifact if the bundle has it.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def optimize_command(bundle, target, source, force, as_json) -> None:
    """Fuse attention (with its KV cache), norms and GELU; adds the graph only if it keeps fp32 parity.

    Example: gptdeploy optimize runs/demo/bundle --target onnxruntime
    """
    from gptdeploy.export.fusion import optimize_bundle

    result = optimize_bundle(bundle, target, source, force)
    data = {"bundle": str(bundle), "artifact": result.artifact.name, "fusions": result.report.fusions,
            "op_counts": result.report.op_counts, "parity": result.parity.to_dict()}  # fmt: skip
    emit(data, as_json, describe_optimized)


def describe_optimized(data: dict) -> str:
    fusions = ", ".join(f"{rule} {count}" for rule, count in data["fusions"].items())
    return f"added {data['artifact']} to {data['bundle']}\nfused: {fusions}\n" + describe_parity([data["parity"]])


@click.command("inspect")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as one JSON document.")
def inspect_command(bundle: Path, as_json: bool) -> None:
    """Show what a bundle holds: model, IO, artifacts with their op counts and parity, after verifying it.

    Example: gptdeploy inspect runs/demo/bundle
    """
    from gptdeploy.bundle import load_bundle

    manifest = load_bundle(bundle).manifest
    emit(manifest, as_json, describe_manifest)


def describe_manifest(manifest: dict) -> str:
    model = manifest["model"]
    lines = [
        f"bundle format {manifest['format_version']}, gptdeploy {manifest['gptdeploy_version']}, "
        + ", ".join(f"{k} {v}" for k, v in manifest["tools"].items() if k != "gptdeploy"),
        f"model: {model['n_layer']} layers, {model['n_head']} heads ({model['n_kv_head'] or model['n_head']} kv), "
        f"width {model['n_embd']}, context {model['block_size']}, vocab {model['vocab_size']}, "
        f"{model['positions']} positions, {model['norm']}, {model['mlp']}",
        f"inputs: {', '.join(manifest['io']['inputs'][:4])}, ...",
        f"outputs: {', '.join(manifest['io']['outputs'][:3])}, ...",
    ]
    for artifact in manifest["artifacts"]:
        details = artifact["details"]
        ops = ", ".join(f"{op} {n}" for op, n in list(details.get("op_counts", {}).items())[:10])
        lines += [
            f"artifact {artifact['name']}: {artifact['kind']} {artifact['precision']}, opset {artifact['opset']}, "
            f"{artifact['path']} (+{len(artifact['files']) - 1} data file)",
            f"  ops: {ops}",
        ]
        if details.get("fusions"):
            lines.append("  fused: " + ", ".join(f"{rule} {count}" for rule, count in details["fusions"].items()))
        if details.get("parity"):
            lines.append("  " + describe_parity([details["parity"]]).replace("\n", "\n  "))
    return "\n".join(lines)


@click.command("parity")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--against", "checkpoint", type=click.Path(path_type=Path), help="Recompute references from this.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda[:N] or tensorrt[:N] (ORT providers).")
@click.option("--tasks", is_flag=True, help="Also compare held-out task accuracy with the reference.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as one JSON document.")
def parity_command(bundle, checkpoint, device, tasks, as_json) -> None:
    """Measure every artifact of a bundle against the PyTorch reference; exits 1 if any fails.

    Example: gptdeploy parity runs/demo/bundle --against runs/demo/finetune --tasks
    """
    from gptdeploy.parity import run_parity

    reports = run_parity(bundle, checkpoint, device=device, tasks=tasks)
    emit({"reports": reports}, as_json, lambda d: describe_parity(d["reports"]))
    if not all(r["passed"] for r in reports):
        raise click.exceptions.Exit(1)
