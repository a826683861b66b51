"""Commands that look inside a model or use an encoder: attention maps, fill-mask, classify."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import emit


@click.command("attention")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-p", "--prompt", required=True, help="The text to look at (bos is put in front).")
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), help="PNG to draw the heatmaps to.")
@click.option("--layer", type=click.IntRange(min=0), help="Only this layer (default: all).")
@click.option("--head", type=click.IntRange(min=0), help="Only this head (default: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the weights, entropies and head summary as JSON.")
def attention_command(model: Path, prompt: str, out: Path | None, layer, head, as_json: bool) -> None:
    """Attention weights of every layer and head of a checkpoint for a prompt (PyTorch reference).

    Example: gptdeploy attention runs/demo/pretrain -p "Mia lives in Riverton." -o attention.png
    """
    from gptdeploy.attention import attention_maps, plot_attention
    from gptdeploy.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(model)
    maps = attention_maps(checkpoint.model, checkpoint.tokenizer, prompt).select(layer, head)
    data = maps.to_dict()
    if out is not None:
        data["png"], data["panels"] = str(out), plot_attention(maps, out)
    emit(data, as_json, describe_attention)


def describe_attention(data: dict) -> str:
    lines = [f"{len(data['tokens'])} tokens: " + " ".join(repr(token) for token in data["tokens"])]
    if "png" in data:
        lines.append(f"wrote {data['panels']} heatmaps to {data['png']}")
    lines.append(f"{'layer':>5} {'head':>4} {'entropy (bits)':>14} {'previous':>8} {'bos':>6}  pattern")
    for h in data["heads"]:
        lines.append(f"{h['layer']:>5} {h['head']:>4} {h['mean_entropy_bits']:>14.2f} "
                     f"{h['previous_token_share']:>8.1%} {h['bos_share']:>6.1%}  {h['pattern']}")  # fmt: skip
    return "\n".join(lines)


def encoder_options(command):
    """Where an encoder runs: a checkpoint on torch, a bundle's graph on ONNX Runtime or TensorRT."""
    options = [
        click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
                     show_default=True, help="auto: torch for a checkpoint; for a bundle, what runs the artifact."),
        click.option("--device", help="cpu, cuda or cuda:N (default: cpu; cuda for TensorRT)."),
        click.option("--artifact", help="The bundle artifact to run, by name (default: its fp32 graph)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document."),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


@click.command("fill-mask")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True, help="Predictions per mask.")
@encoder_options
def fill_mask_command(model: Path, texts, top_k: int, backend, device, artifact, as_json: bool) -> None:
    """The most likely tokens at each <|mask|> of the texts (an MLM encoder, checkpoint or bundle).

    Example: gptdeploy fill-mask runs/mlm "Mia lives in <|mask|>."
    """
    from gptdeploy.encoder import fill_mask

    results = [result.to_dict() for result in fill_mask(model, texts, top_k, backend, device, artifact)]
    emit({"results": results}, as_json, describe_fill_mask)


def describe_fill_mask(data: dict) -> str:
    lines = []
    for result in data["results"]:
        lines.append(f"{result['text']}  ->  {result['filled']}")
        for index, predictions in enumerate(result["predictions"]):
            best = "  ".join(f"{p['token']!r} {p['probability']:.1%}" for p in predictions)
            lines.append(f"  mask {index + 1}: {best}")
    return "\n".join(lines)


@click.command("classify")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@encoder_options
def classify_command(model: Path, texts, backend, device, artifact, as_json: bool) -> None:
    """The label of each text from a fine-tuned encoder's classification head (checkpoint or bundle).

    Example: gptdeploy classify runs/classify "Then bake it for 20 minutes."
    """
    from gptdeploy.encoder import classify

    results = [result.to_dict() for result in classify(model, texts, backend, device, artifact)]
    emit({"results": results}, as_json, describe_classify)


def describe_classify(data: dict) -> str:
    return "\n".join(f"{r['label']:<12} {r['probabilities'][r['label']]:>6.1%}  {r['text']}" for r in data["results"])
