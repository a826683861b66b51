"""Options and rendering shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, fields

import click

from gptdeploy.runtimes.base import DEFAULT_SLOTS


def emit(data: dict, as_json: bool, text: Callable[[dict], str]) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text(data))


def backend_options(command: Callable) -> Callable:
    """Where a model runs: shared by every command that loads a runtime."""
    options = [
        click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
                     show_default=True, help="auto: torch for a checkpoint; for a bundle, what runs the artifact."),
        click.option("--device", help="cpu, cuda or cuda:N (default: cpu; cuda for TensorRT)."),
        click.option("--precision", default="fp32", show_default=True,
                     help="fp32, or fp16/bf16 on CUDA (torch); in a bundle, the first artifact of this precision."),
        click.option("--artifact", help="The bundle artifact to run, by name (see `gptdeploy inspect`)."),
        click.option("--max-slots", type=click.IntRange(min=1), default=DEFAULT_SLOTS, show_default=True,
                     help="Sequences the runtime's KV cache holds at once (prompts beyond it wait for a slot)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def generation_options(command: Callable) -> Callable:
    """An option for every `GenerationConfig` field meant for the command line, read from the field's declaration
    (name, type, default, help), so the CLI can never drift from the API."""
    from gptdeploy.generate import GenerationConfig

    for setting in reversed(fields(GenerationConfig)):
        meta = setting.metadata
        if meta.get("cli") is False:
            continue
        flag = meta.get("option", "--" + setting.name.replace("_", "-"))
        if meta.get("flag"):
            option = click.option(flag, setting.name, is_flag=True, help=meta["help"])
        elif meta.get("multiple"):
            option = click.option(flag, setting.name, multiple=True, help=meta["help"])
        else:
            option = click.option(flag, setting.name, type=type(setting.default), default=setting.default,
                                  show_default=True, help=meta["help"])  # fmt: skip
        command = option(command)
    return command


def generation_config(**values):
    from gptdeploy.generate import GenerationConfig

    return GenerationConfig(**values)


def describe_parity(reports: list[dict], artifacts: list[str] | None = None) -> str:
    """The parity table: a row per report, named by its "artifact" key or by `artifacts`."""
    header = (
        f"{'artifact':<17} {'precision':<9} {'max|dlogit|':>11} {'rel':>9} {'mean KL':>9} {'top-1':>6} {'greedy':>7}"
        " verdict"
    )
    lines = [header]
    for index, r in enumerate(reports):
        name = artifacts[index] if artifacts else r["artifact"]
        if "not_run" in r:
            lines.append(f"{name:<17} {r['precision']:<9} not run: {r['not_run']}")
            continue
        verdict = "ok" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
        if "accuracy" in r:
            reference = r.get("reference_accuracy")
            verdict += f", task accuracy {r['accuracy']:.1%}" + (f" (reference {reference:.1%})" if reference else "")
        lines.append(f"{name:<17} {r['precision']:<9} {r['max_abs_logit_diff']:>11.2e} "
                     f"{r['max_rel_logit_diff']:>9.2e} {r['mean_kl']:>9.2e} {r['top1_agreement']:>6.1%} "
                     f"{r['greedy_identical']:>3}/{r['prompts']:<3} {verdict}")  # fmt: skip
    return "\n".join(lines)


def stage_options(source: str | None = "onnx-fp32") -> Callable[[Callable], Callable]:
    """What every command that adds an artifact to a bundle takes; `source`: the default of --from."""
    options = [
        click.option("--from", "source", default=source, show_default=source is not None,
                     help="The artifact to start from, by name."),
        click.option("--force", is_flag=True, help="Replace an artifact of the same name."),
        click.option("--tasks/--no-tasks", default=None,
                     help="Hold held-out task accuracy to the budget (default: if the bundle records PyTorch's)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document."),
    ]  # fmt: skip

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def emit_stage(result, as_json: bool) -> None:
    """Print what a stage added to a bundle (a `StageResult`)."""
    artifact = result.artifact
    emit({"bundle": str(result.bundle), "artifact": artifact.name, "kind": artifact.kind,
          "precision": artifact.precision, "path": artifact.path, **asdict(artifact.details)}, as_json,
         describe_stage)  # fmt: skip


def describe_stage(data: dict) -> str:
    recipe = data["recipe"]
    lines = [f"added {data['artifact']} ({data['kind']} {data['precision']}, {data['size_bytes'] / 1e6:.2f} MB) to "
             f"{data['bundle']} in {data['seconds']:.0f} s",
             describe_parity([data["parity"]], [data["artifact"]])]  # fmt: skip
    if data["task_accuracy"] is not None:
        lines.append(f"task accuracy {data['task_accuracy']:.1%}")
    if recipe.get("fusions"):
        lines.append("fused: " + ", ".join(f"{rule} {count}" for rule, count in recipe["fusions"].items()))
    if data["guardrail"] and data["guardrail"]["kept_fp32"]:
        guardrail = data["guardrail"]
        lines.append(f"kept in fp32 by the guardrail: {', '.join(guardrail['kept_fp32'])} "
                     f"({len(guardrail['steps'])} candidates measured)")  # fmt: skip
    return "\n".join(lines)
