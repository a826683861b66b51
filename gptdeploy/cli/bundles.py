"""Commands that make and check bundles: export, optimize, inspect, parity."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import describe_parity, emit, emit_stage, stage_options
from gptdeploy.export.fusion import TARGETS
from gptdeploy.graph_contract import DEFAULT_OPSET


@click.command("export")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", "bundle", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--opset", default=DEFAULT_OPSET, show_default=True, help="ONNX opset of the graph.")
@click.option("--force", is_flag=True, help="Replace an existing bundle.")
@click.option("--tasks/--no-tasks", default=None,
              help="Record PyTorch's held-out task accuracy and hold every artifact to it (default: if the checkpoint "
                   "was tuned on the shipped tasks).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def export_command(checkpoint, bundle, opset, force, tasks, as_json) -> None:
    """Export a checkpoint to a self-verifying ONNX bundle; fails if ONNX Runtime does not match PyTorch.

    Example: gptdeploy export runs/demo/finetune -o runs/demo/bundle
    """
    from gptdeploy.export.pipeline import export_bundle

    result = export_bundle(checkpoint, bundle, opset, force, tasks)
    data = {"bundle": str(result.bundle), "artifact": result.artifact.name, "parity": result.parity.to_dict(),
            "task_accuracy": result.artifact.details.task_accuracy}  # fmt: skip
    emit(data, as_json, lambda d: f"wrote {d['bundle']}\n" + describe_parity([d["parity"]], [d["artifact"]]))


@click.command("optimize")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option(
    "--target",
    type=click.Choice(list(TARGETS)),
    default="onnxruntime",
    show_default=True,
    help="onnxruntime: contrib operators (MultiHeadAttention, SkipLayerNormalization, ...); tensorrt: the "
    "standard opset-23 Attention.",
)
@stage_options()
def optimize_command(bundle, target, source, force, tasks, as_json) -> None:
    """Fuse attention (with its KV cache), norms and GELU; adds the graph only if it keeps fp32 parity.

    Example: gptdeploy optimize runs/demo/bundle --target onnxruntime
    """
    from gptdeploy.export.fusion import optimize_bundle

    emit_stage(optimize_bundle(bundle, target, source, force, tasks), as_json)


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
    model, reference = manifest["model"], manifest["reference"]
    accuracy = reference.get("task_accuracy")
    lines = [
        f"bundle format {manifest['format_version']}, gptdeploy {manifest['gptdeploy_version']}, "
        + ", ".join(f"{k} {v}" for k, v in manifest["tools"].items() if k != "gptdeploy"),
        f"model: {model['n_layer']} layers, {model['n_head']} heads ({model['n_kv_head'] or model['n_head']} kv), "
        f"width {model['n_embd']}, context {model['block_size']}, vocab {model['vocab_size']}, "
        f"{model['positions']} positions, {model['norm']}, {model['mlp']}",
        f"reference: {reference['checkpoint']}"
        + (f", held-out task accuracy {accuracy:.1%}" if accuracy is not None else ""),
        f"inputs: {', '.join(manifest['io']['inputs'][:4])}, ...",
        f"outputs: {', '.join(manifest['io']['outputs'][:3])}, ...",
    ]
    for artifact in manifest["artifacts"]:
        details = artifact["details"]
        ops = ", ".join(f"{op} {n}" for op, n in list(details["op_counts"].items())[:10])
        lines.append(f"artifact {artifact['name']}: {artifact['kind']} {artifact['precision']}, opset "
                     f"{artifact['opset']}, {artifact['path']}, {details['size_bytes'] / 1e6:.2f} MB, from "
                     f"{details['source']}")  # fmt: skip
        if ops:
            lines.append(f"  ops: {ops}")
        recipe = dict(details["recipe"])
        fusions = recipe.pop("fusions", None)
        shown = {key: value for key, value in recipe.items() if key not in ("checkpoint", "profiles")}
        lines.append("  recipe: " + ", ".join(f"{key} {value}" for key, value in shown.items()))
        if fusions:
            lines.append("  fused: " + ", ".join(f"{rule} {count}" for rule, count in fusions.items()))
        lines.append("  " + describe_parity([details["parity"]], [artifact["name"]]).replace("\n", "\n  "))
        if details["task_accuracy"] is not None:
            lines.append(f"  task accuracy {details['task_accuracy']:.1%}")
        if details["guardrail"]:
            guardrail = details["guardrail"]
            sensitivity = ", ".join(f"{layer} {kl:.1e}" for layer, kl in guardrail["sensitivity"].items())
            lines.append(f"  guardrail: kept in fp32: {', '.join(guardrail['kept_fp32']) or 'nothing'}; "
                         f"{len(guardrail['steps'])} candidates measured"
                         + (f"; sensitivity (mean KL): {sensitivity}" if sensitivity else ""))  # fmt: skip
    return "\n".join(lines)


@click.command("parity")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--against", "checkpoint", type=click.Path(path_type=Path), help="Recompute references from this.")
@click.option("--device", help="Where artifacts run: cpu, cuda[:N] or tensorrt[:N] (default: their backend's).")
@click.option("--tasks", is_flag=True, help="Also compare held-out task accuracy with the reference.")
@click.option("--json", "as_json", is_flag=True, help="Print the reports as one JSON document.")
def parity_command(bundle, checkpoint, device, tasks, as_json) -> None:
    """Measure every artifact of a bundle against the PyTorch reference; exits 1 if any fails or cannot run here.

    Example: gptdeploy parity runs/demo/bundle --against runs/demo/finetune --tasks
    """
    from gptdeploy.corpus.tasks import generate_tasks
    from gptdeploy.parity import run_parity

    reports = run_parity(bundle, checkpoint, device=device, heldout=generate_tasks()[1] if tasks else None)
    emit({"reports": reports}, as_json, lambda d: describe_parity(d["reports"]))
    if not all(r["passed"] for r in reports):
        raise click.exceptions.Exit(1)
