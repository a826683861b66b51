"""`gptdeploy <verb>`: each command parses its options, calls one library function and renders text or --json.

Results go to stdout, progress to stderr. A `GptDeployError` becomes `Error: ...` and exit code 1, in one place.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

import click

from gptdeploy import __version__
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


def emit(data: dict, as_json: bool, text: Callable[[dict], str]) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text(data))


def training_options(command: Callable) -> Callable:
    """Options shared by train and finetune; unset ones keep the stage's defaults."""
    options = [
        click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps (the LR schedule spans them)."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Sequences per micro-batch and process."),
        click.option("--grad-accum", type=click.IntRange(min=1), help="Micro-batches per optimizer step."),
        click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate."),
        click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True), help="Wall-clock budget."),
        click.option("--seed", type=int, help="Seed for initialization and batch order."),
        click.option("--compile", "compile_", is_flag=True, help="Use torch.compile (pays off on GPU)."),
        click.option("--resume", is_flag=True, help="Continue from the training state in --out."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def backend_options(command: Callable) -> Callable:
    """Where a model runs: shared by every command that loads a runtime."""
    options = [
        click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
                     show_default=True, help="auto: torch for a checkpoint, ONNX Runtime for a bundle."),
        click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N."),
        click.option("--precision", default="fp32", show_default=True, help="fp32, or fp16/bf16 on CUDA (torch)."),
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


def make_train_config(defaults, compile_: bool, **values):
    chosen = {name: value for name, value in values.items() if value is not None}
    return replace(defaults, compile=compile_ or defaults.compile, **chosen)


def parse_setting(setting: str) -> tuple[str, object]:
    """'n_head=8' -> ('n_head', 8): values are read as JSON when they parse (numbers, true, null), else as text."""
    name, separator, value = setting.partition("=")
    if not separator or not name:
        raise click.BadParameter(f"expected FIELD=VALUE, got {setting!r}", param_hint="--set")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def describe_training(data: dict) -> str:
    bits = data.get("val_bits_per_char")
    lines = [
        f"steps {data['steps']}  train loss {data['train_loss']:.4f}  val loss {data['val_loss']:.4f}"
        f"  val perplexity {data['val_perplexity']:.3f}" + (f"  val bits/char {bits:.4f}" if bits else ""),
        f"{data['seconds']:.0f} s at {data['tokens_per_second']:,.0f} tokens/s"
        + ("  (stopped by the time budget)" if data["stopped_early"] else ""),
    ]
    return "\n".join(lines)


@main.command("data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Generator seed (0 = the shipped samples).")
def data_command(out_dir: Path, seed: int) -> None:
    """Write the shipped corpus and fine-tuning tasks (regenerated, byte-identical for seed 0).

    Example: gptdeploy data samples/
    """
    from gptdeploy.samples import write_samples

    for name, path in write_samples(out_dir, seed=seed).items():
        click.echo(f"{name}: {path}")


@main.command("train")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--preset", default="small", show_default=True, help="Model shape: tiny, small or gpt2-124m.")
@click.option("--data", "sources", multiple=True, type=click.Path(path_type=Path), help="Text files or folders.")
@click.option("--set", "model_settings", multiple=True, metavar="FIELD=VALUE",
              help="Change a model config field of the preset, e.g. --set n_head=8 --set positions=rope.")  # fmt: skip
@training_options
def train_command(out_dir: Path, preset: str, sources, model_settings, resume, device, as_json, compile_, **values):
    """Pretrain a tokenizer and a model on text (the shipped corpus unless --data is given).

    Example: gptdeploy train --out runs/pretrain --preset small --max-minutes 8
    """
    from gptdeploy.distributed import is_main_process
    from gptdeploy.stages import PRETRAIN_DEFAULTS, pretrain

    config = make_train_config(PRETRAIN_DEFAULTS, compile_, **values)
    overrides = dict(parse_setting(setting) for setting in model_settings)

    result = pretrain(out_dir, preset, sources, config, overrides, resume, device)
    if is_main_process():  # under torchrun, one report rather than one per rank
        emit(asdict(result), as_json, describe_training)


@main.command("finetune")
@click.argument("base", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "train_file", type=click.Path(path_type=Path), help="Training pairs (JSONL).")
@click.option("--heldout", "heldout_file", type=click.Path(path_type=Path), help="Held-out pairs (JSONL).")
@training_options
def finetune_command(base, out_dir, train_file, heldout_file, resume, device, as_json, compile_, **values):
    """Fine-tune a checkpoint on prompt/completion pairs and report held-out exact match.

    Example: gptdeploy finetune runs/pretrain --out runs/finetune
    """
    from gptdeploy.stages import FINETUNE_DEFAULTS, finetune

    config = make_train_config(FINETUNE_DEFAULTS, compile_, **values)
    result = finetune(base, out_dir, train_file, heldout_file, config, resume, device)
    if result.heldout is None:  # a rank other than 0 under torchrun
        return
    data = {**asdict(result.train), "heldout": result.heldout.to_dict()}
    emit(data, as_json, lambda d: describe_training(d) + "\n" + describe_accuracy(d["heldout"]))


def describe_accuracy(report: dict) -> str:
    per_task = "  ".join(f"{task} {acc:.1%}" for task, acc in report["per_task"].items())
    return f"held-out exact match {report['accuracy']:.1%} over {report['examples']} examples ({per_task})"


@main.command("evaluate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--heldout", "heldout_file", type=click.Path(path_type=Path), help="Pairs (JSONL); default: shipped.")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def evaluate_command(model: Path, heldout_file: Path | None, backend, device, precision, as_json: bool) -> None:
    """Held-out exact match of a fine-tuned model (greedy decoding) on any backend.

    Example: gptdeploy evaluate runs/demo/finetune
    """
    from gptdeploy.data import read_pairs
    from gptdeploy.evaluate import exact_match
    from gptdeploy.runtimes.base import load_runtime
    from gptdeploy.tasks import generate_tasks

    examples = read_pairs(heldout_file) if heldout_file else generate_tasks()[1]
    with load_runtime(model, backend, device, precision) as runtime:
        emit(exact_match(runtime, examples).to_dict(), as_json, describe_accuracy)


@main.command("generate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-p", "--prompt", "prompts", multiple=True, required=True, help="Prompt text (repeat for a batch).")
@backend_options
@sampling_options
@click.option("--stream", is_flag=True, help="Print text as it is generated.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as one JSON document.")
def generate_command(model, prompts, backend, device, precision, stream, as_json, **settings) -> None:
    """Complete prompts with a checkpoint or bundle on any backend.

    Example: gptdeploy generate runs/demo/finetune -p $'Q: What is 12 plus 30?\\nA:'
    """
    from gptdeploy.generate import generate
    from gptdeploy.generate import stream as stream_text
    from gptdeploy.runtimes.base import load_runtime

    if stream and as_json:
        raise click.UsageError("--stream and --json exclude each other")
    config = generation_config(**settings)
    with load_runtime(model, backend, device, precision) as runtime:
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


@main.command("chat")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--template", default="{}", show_default=True, help="How a line becomes a prompt; {} is the line.")
@backend_options
@sampling_options
def chat_command(model, template, backend, device, precision, **settings) -> None:
    """Type a line, read the model's streamed answer; an empty line or end of input quits.

    Example: gptdeploy chat runs/demo/finetune --template $'Q: {}\\nA:'
    """
    from gptdeploy.generate import stream
    from gptdeploy.runtimes.base import load_runtime

    if "{}" not in template:
        raise click.BadParameter("the template needs a {} where the line goes", param_hint="--template")
    config = generation_config(**settings)
    with load_runtime(model, backend, device, precision) as runtime:
        click.echo(f"chatting with {model} on {runtime.info.backend}/{runtime.info.device}; empty line quits", err=True)
        for line in typed_lines():
            for piece in stream(runtime, template.replace("{}", line), config):
                click.echo(piece, nl=False)
            click.echo()


def typed_lines() -> Iterator[str]:
    """Lines from the user until an empty line or the end of input (Ctrl-D), which both end the chat quietly."""
    while True:
        try:
            line = click.prompt("", prompt_suffix="> ", default="", show_default=False, err=True).strip()
        except click.exceptions.Abort:
            return
        if not line:
            return
        yield line


@main.command("export")
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


def describe_parity(reports: list[dict]) -> str:
    header = (
        f"{'backend':<12} {'precision':<9} {'max|dlogit|':>11} {'rel':>9} {'mean KL':>9} {'top-1':>6} {'greedy':>7}"
        " verdict"
    )
    lines = [header]
    for r in reports:
        verdict = "ok" if r["passed"] else "FAIL: " + "; ".join(r["failures"])
        if "accuracy" in r:
            reference = r.get("reference_accuracy")
            verdict += f", task accuracy {r['accuracy']:.1%}" + (f" (reference {reference:.1%})" if reference else "")
        lines.append(f"{r['backend']:<12} {r['precision']:<9} {r['max_abs_logit_diff']:>11.2e} "
                     f"{r['max_rel_logit_diff']:>9.2e} {r['mean_kl']:>9.2e} {r['top1_agreement']:>6.1%} "
                     f"{r['greedy_identical']:>3}/{r['prompts']:<3} {verdict}")  # fmt: skip
    return "\n".join(lines)


@main.command("inspect")
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
        ops = ", ".join(f"{op} {n}" for op, n in list(details.get("op_counts", {}).items())[:8])
        lines += [
            f"artifact {artifact['name']}: {artifact['kind']} {artifact['precision']}, opset {artifact['opset']}, "
            f"{artifact['path']} (+{len(artifact['files']) - 1} data file)",
            f"  ops: {ops}",
        ]
        if details.get("parity"):
            lines.append("  " + describe_parity([details["parity"]]).replace("\n", "\n  "))
    return "\n".join(lines)


@main.command("parity")
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


@main.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
def plot_command(run_dirs, out: Path) -> None:
    """Draw training and validation loss of one or more runs to a PNG.

    Example: gptdeploy plot runs/pretrain runs/finetune -o loss.png
    """
    from gptdeploy.plot import plot_losses

    click.echo(str(plot_losses(run_dirs, out)))


@main.command("demo")
@click.option("--out", "out_dir", default="runs/demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--quick", is_flag=True, help="Tiny model, about two minutes: a first look.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming or reusing earlier checkpoints.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def demo_command(out_dir: Path, quick: bool, fresh: bool, as_json: bool) -> None:
    """Generate data, pretrain, fine-tune, and report held-out accuracy with a few generations.

    Example: gptdeploy demo          (small model, about 15 minutes on 2 CPU cores)
    """
    from gptdeploy.demo import FULL, QUICK, describe_demo, run_demo

    result = run_demo(out_dir, QUICK if quick else FULL, fresh, log=lambda line: click.echo(line, err=True))
    emit(result, as_json, describe_demo)


if __name__ == "__main__":
    main()
