"""Options and rendering shared by the command modules."""

from __future__ import annotations

import json
from collections.abc import Callable

import click


def emit(data: dict, as_json: bool, text: Callable[[dict], str]) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text(data))


def backend_options(command: Callable) -> Callable:
    """Where a model runs: shared by every command that loads a runtime."""
    options = [
        click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
                     show_default=True, help="auto: torch for a checkpoint, ONNX Runtime for a bundle."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
        click.option("--precision", default="fp32", show_default=True,
                     help="fp32, or fp16/bf16 on CUDA (torch); in a bundle, the first artifact of this precision."),
        click.option("--artifact", help="The bundle artifact to run, by name (see `gptdeploy inspect`)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def sampling_options(command: Callable) -> Callable:
    """The generation settings shared by generate and chat."""
    options = [
        click.option("--max-new-tokens", default=64, show_default=True, help="Tokens to generate (prompt excluded)."),
        click.option("--temperature", default=0.0, show_default=True, help="0 = greedy."),
        click.option("--top-k", default=0, show_default=True, help="Keep the k most likely tokens (0 = off)."),
        click.option("--top-p", default=1.0, show_default=True, help="Nucleus sampling mass (1 = off)."),
        click.option("--min-p", default=0.0, show_default=True, help="Drop tokens below min_p x the best (0 = off)."),
        click.option("--repetition-penalty", default=1.0, show_default=True, help="> 1 discourages repeats."),
        click.option("--seed", default=0, show_default=True, help="Sampling seed."),
        click.option("--stop", "stop_strings", multiple=True, help="Stop before this text (repeatable)."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def generation_config(stop_strings: tuple[str, ...], **values):
    from gptdeploy.generate import GenerationConfig

    return GenerationConfig(stop_strings=tuple(stop_strings), **values)


def describe_parity(reports: list[dict]) -> str:
    header = (
        f"{'artifact':<17} {'precision':<9} {'max|dlogit|':>11} {'rel':>9} {'mean KL':>9} {'top-1':>6} {'greedy':>7}"
        " verdict"
    )
    lines = [header]
    for r in reports:
        verdict = "ok" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
        if "accuracy" in r:
            reference = r.get("reference_accuracy")
            verdict += f", task accuracy {r['accuracy']:.1%}" + (f" (reference {reference:.1%})" if reference else "")
        lines.append(f"{r.get('artifact', r['backend']):<17} {r['precision']:<9} {r['max_abs_logit_diff']:>11.2e} "
                     f"{r['max_rel_logit_diff']:>9.2e} {r['mean_kl']:>9.2e} {r['top1_agreement']:>6.1%} "
                     f"{r['greedy_identical']:>3}/{r['prompts']:<3} {verdict}")  # fmt: skip
    return "\n".join(lines)
