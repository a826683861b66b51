"""Commands that make and judge models: data, train, finetune, evaluate, plot, demo."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import click

from gptdeploy.cli.common import backend_options, emit


def training_options(command: Callable) -> Callable:
    """Options shared by train and finetune; unset ones keep the stage's defaults."""
    options = [
        click.option("--max-steps", type=click.IntRange(min=1), help="Optimizer steps (the LR schedule spans them)."),
        click.option("--batch-size", type=click.IntRange(min=1), help="Sequences per micro-batch and process."),
        click.option("--grad-accum", type=click.IntRange(min=1), help="Micro-batches per optimizer step."),
        click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate."),
        click.option(
            "--max-minutes",
            type=click.FloatRange(min=0, min_open=True),
            help="Stop after this long with a checkpoint saved as interrupted (--resume finishes the plan).",
        ),
        click.option("--seed", type=int, help="Seed for initialization and batch order."),
        click.option("--compile", "compile_", is_flag=True, help="Use torch.compile (pays off on GPU)."),
        click.option("--resume", is_flag=True, help="Continue from the training state in --out."),
        click.option("--force", is_flag=True, help="Overwrite a checkpoint already in --out."),
        click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


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
    bits, unigram = data.get("val_bits_per_char"), data.get("val_unigram_accuracy")
    lines = [
        f"steps {data['steps']}  train loss {data['train_loss']:.4f}  val loss {data['val_loss']:.4f}"
        f"  val perplexity {data['val_perplexity']:.3f}" + (f"  val bits/char {bits:.4f}" if bits else ""),
        f"val accuracy {data['val_accuracy']:.1%}"
        + (f"  (masked tokens; the unigram baseline's {unigram:.1%})" if unigram is not None else ""),
        f"{data['seconds']:.0f} s at {data['tokens_per_second']:,.0f} tokens/s"
        + (
            "  (INTERRUPTED by --max-minutes before the last planned step: --resume trains on)"
            if data["stopped_early"]
            else ""
        ),
    ]
    return "\n".join(lines)


@click.command("data")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True, help="Generator seed (0 = the shipped samples).")
@click.option("--json", "as_json", is_flag=True, help="Print the files written and the corpus statistics as JSON.")
def data_command(out_dir: Path, seed: int, as_json: bool) -> None:
    """Write the shipped corpus and fine-tuning tasks (regenerated, byte-identical for seed 0).

    Example: gptdeploy data samples/
    """
    import json

    from gptdeploy.corpus.samples import write_samples

    files = write_samples(out_dir, seed=seed)
    data = {"files": {name: str(path) for name, path in files.items()},
            "stats": json.loads(files["stats"].read_text(encoding="utf-8"))}  # fmt: skip
    emit(data, as_json, lambda d: "\n".join(f"{name}: {path}" for name, path in d["files"].items()))


@click.command("train")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--preset", default="small", show_default=True, help="Model shape: tiny, small or gpt2-124m.")
@click.option("--data", "sources", multiple=True, type=click.Path(path_type=Path), help="Text files or folders.")
@click.option("--set", "model_settings", multiple=True, metavar="FIELD=VALUE",
              help="Change a model config field of the preset, e.g. --set n_head=8 --set positions=rope.")  # fmt: skip
@click.option(
    "--objective",
    type=click.Choice(["causal", "mlm"]),
    default="causal",
    show_default=True,
    help="causal: predict the next token (a decoder); mlm: predict masked tokens from both sides (an "
    "encoder, for fill-mask and classification).",
)
@click.option(
    "--mask-rate",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.15,
    show_default=True,
    help="mlm: the share of tokens selected for prediction.",
)
@training_options
def train_command(out_dir: Path, preset: str, sources, model_settings, objective, mask_rate, resume, force, device,
                  as_json, compile_, **values):  # fmt: skip
    """Pretrain a tokenizer and a model on text (the shipped corpus unless --data is given).

    Example: gptdeploy train --out runs/pretrain --preset small --max-minutes 8
    """
    from gptdeploy.corpus.world import generate_corpus
    from gptdeploy.data import read_documents
    from gptdeploy.distributed import is_main_process
    from gptdeploy.stages import PRETRAIN_DEFAULTS, pretrain

    config = make_train_config(PRETRAIN_DEFAULTS, compile_, **values)
    overrides = dict(parse_setting(setting) for setting in model_settings)
    documents = read_documents(sources) if sources else generate_corpus().documents
    data = ", ".join(map(str, sources)) or "shipped corpus"
    result = pretrain(
        out_dir,
        preset,
        documents,
        config,
        overrides,
        resume,
        device,
        data=data,
        force=force,
        objective=objective,
        mask_rate=mask_rate,
    )
    if is_main_process():  # under torchrun, one report rather than one per rank
        emit(asdict(result), as_json, describe_training)


@click.command("finetune")
@click.argument("base", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--data", "train_file", type=click.Path(path_type=Path), help="Training pairs (JSONL).")
@click.option("--heldout", "heldout_file", type=click.Path(path_type=Path), help="Held-out pairs (JSONL).")
@click.option(
    "--task",
    type=click.Choice(["generate", "classify"]),
    default="generate",
    show_default=True,
    help='generate: prompt/completion pairs; classify: {"text", "label"} lines (a head over the '
    "pooled hidden states; default data: the shipped genre task).",
)
@training_options
def finetune_command(base, out_dir, train_file, heldout_file, task, resume, force, device, as_json, compile_,
                     **values):  # fmt: skip
    """Fine-tune a checkpoint on prompt/completion pairs (held-out exact match) or labelled texts (held-out accuracy).

    Example: gptdeploy finetune runs/pretrain --out runs/finetune
    Example: gptdeploy finetune runs/mlm --task classify --data train.jsonl --out runs/classify
    """
    from gptdeploy.corpus.tasks import SHIPPED_TASKS, generate_tasks
    from gptdeploy.data import read_pairs
    from gptdeploy.errors import DataError
    from gptdeploy.stages import FINETUNE_DEFAULTS, finetune

    if task == "classify":
        classify_finetune(base, out_dir, train_file, heldout_file, resume, force, device, as_json, compile_, values)
        return
    if (train_file is None) != (heldout_file is None):
        raise DataError("give both --data and --heldout (or neither, for the shipped tasks)")
    shipped = train_file is None
    examples = generate_tasks() if shipped else (read_pairs(train_file), read_pairs(heldout_file))
    config = make_train_config(FINETUNE_DEFAULTS, compile_, **values)
    tasks = SHIPPED_TASKS if shipped else str(train_file)
    result = finetune(base, out_dir, examples, config, resume, device, tasks=tasks, force=force)
    if result.heldout is None:  # a rank other than 0 under torchrun
        return
    data = {**asdict(result.train), "heldout": result.heldout.to_dict()}
    emit(data, as_json, lambda d: describe_training(d) + "\n" + describe_accuracy(d["heldout"]))


def classify_finetune(base, out_dir, train_file, heldout_file, resume, force, device, as_json, compile_, values):
    """`finetune --task classify`: the shipped genre task, or --data with --heldout (or its last tenth held out)."""
    from gptdeploy.classification import read_labeled
    from gptdeploy.corpus.genres import GENRE_TASK, generate_genre_task
    from gptdeploy.errors import DataError
    from gptdeploy.stages import CLASSIFY_DEFAULTS, finetune_classifier

    if train_file is None:
        if heldout_file is not None:
            raise DataError("--heldout needs --data (or give neither, for the shipped genre task)")
        examples, task = generate_genre_task(), GENRE_TASK
    elif heldout_file is not None:
        examples, task = (read_labeled(train_file), read_labeled(heldout_file)), str(train_file)
    else:
        labeled = read_labeled(train_file)
        cut = len(labeled) - max(1, len(labeled) // 10)
        examples, task = (labeled[:cut], labeled[cut:]), str(train_file)
    config = make_train_config(CLASSIFY_DEFAULTS, compile_, **values)
    result = finetune_classifier(base, out_dir, examples, config, resume, device, task=task, force=force)
    data = {**asdict(result.train), "labels": result.labels, "heldout_accuracy": result.heldout_accuracy,
            "heldout_examples": len(examples[1])}  # fmt: skip
    emit(data, as_json, lambda d: describe_training(d) + f"\nheld-out accuracy {d['heldout_accuracy']:.1%} over "
         f"{d['heldout_examples']} examples ({len(d['labels'])} labels)")  # fmt: skip


def describe_accuracy(report: dict) -> str:
    per_task = "  ".join(f"{task} {acc:.1%}" for task, acc in report["per_task"].items())
    return f"held-out exact match {report['accuracy']:.1%} over {report['examples']} examples ({per_task})"


@click.command("evaluate")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--heldout", "heldout_file", type=click.Path(path_type=Path), help="Pairs (JSONL); default: shipped.")
@backend_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def evaluate_command(model: Path, heldout_file: Path | None, backend, device, precision, artifact, max_slots,
                     as_json) -> None:  # fmt: skip
    """Held-out exact match of a fine-tuned model (greedy decoding) on any backend.

    Example: gptdeploy evaluate runs/demo/finetune
    """
    from gptdeploy.corpus.tasks import generate_tasks
    from gptdeploy.data import read_pairs
    from gptdeploy.evaluate import exact_match
    from gptdeploy.runtimes.base import load_runtime

    examples = read_pairs(heldout_file) if heldout_file else generate_tasks()[1]
    with load_runtime(model, backend, device, precision, max_slots, artifact) as runtime:
        emit(exact_match(runtime, examples).to_dict(), as_json, describe_accuracy)


@click.command("plot")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="PNG to write.")
@click.option("--json", "as_json", is_flag=True, help="Also print every run's loss records as one JSON document.")
def plot_command(run_dirs, out: Path, as_json: bool) -> None:
    """Draw training and validation loss of one or more runs to a PNG.

    Example: gptdeploy plot runs/pretrain runs/finetune -o loss.png
    """
    from gptdeploy.plot import plot_losses, read_metrics

    data = {"plot": str(plot_losses(run_dirs, out)), "runs": {str(run): read_metrics(run) for run in run_dirs}}
    emit(data, as_json, lambda d: d["plot"])


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Where the demo works  [default: runs/demo, runs/demo-quick with --quick, runs/demo-mlm with --objective mlm]",
)
@click.option("--quick", is_flag=True, help="A smaller model, about three minutes: a first look.")
@click.option("--fresh", is_flag=True, help="Start over instead of resuming or reusing earlier checkpoints.")
@click.option(
    "--objective",
    type=click.Choice(["causal", "mlm"]),
    default="causal",
    show_default=True,
    help="causal: the decoder demo; mlm: MLM pretraining, classification fine-tuning, encoder export.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def demo_command(out_dir: Path | None, quick: bool, fresh: bool, objective: str, as_json: bool) -> None:
    """Generate data, pretrain, fine-tune, export, fuse and quantize, then compare every backend and variant.

    Example: gptdeploy demo                   (small model, about 15 minutes on 2 CPU cores)
    Example: gptdeploy demo --objective mlm   (an encoder, a few minutes)
    """
    if objective == "mlm":
        from gptdeploy.demo_mlm import MLM_FULL, MLM_QUICK, describe_mlm_demo, run_mlm_demo

        result = run_mlm_demo(out_dir or Path("runs/demo-mlm"), MLM_QUICK if quick else MLM_FULL, fresh)
        emit(result, as_json, describe_mlm_demo)
        return
    from gptdeploy.demo import FULL, QUICK, describe_demo, run_demo

    result = run_demo(out_dir or Path("runs/demo-quick" if quick else "runs/demo"), QUICK if quick else FULL, fresh)
    emit(result, as_json, describe_demo)
