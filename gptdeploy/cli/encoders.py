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
