"""Commands that move models between gptdeploy and Hugging Face folders: import-hf, export-hf."""

from __future__ import annotations

from pathlib import Path

import click

from gptdeploy.cli.common import emit
from gptdeploy.hf_config import EXPORT_ORDER


@click.command("import-hf")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--out", "checkpoint", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--block-size", type=click.IntRange(min=1),
              help="Cap a rotary model's context (Llama configs often declare far more than you need; a sliding-window "
                   "model needs a context its window covers).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing checkpoint folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def import_hf_command(folder, checkpoint, block_size, force, as_json) -> None:
    """Import a local GPT-2, Llama, Mistral, Qwen2, Qwen3 or Phi-3 folder (config.json, safetensors, tokenizer.json).

    Example: gptdeploy import-hf ~/models/TinyLlama -o runs/tinyllama --block-size 2048
    """
    from gptdeploy.hf_import import import_hf

    result = import_hf(folder, checkpoint, block_size=block_size, force=force)
    data = {"checkpoint": str(result.checkpoint), "family": result.family, "parameters": result.parameters,
            "source_dtype": result.source_dtype, "config": result.config.to_dict()}  # fmt: skip
    emit(data, as_json, describe_import)


def describe_import(data: dict) -> str:
    c = data["config"]
    kv = f", {c['n_kv_head']} kv heads" if c["n_kv_head"] else ""
    return (f"imported a {data['family']} model ({data['parameters']:,} parameters, {c['n_layer']} layers, "
            f"{c['n_head']} heads{kv}, width {c['n_embd']}, vocab {c['vocab_size']}, context {c['block_size']}; "
            f"stored as {data['source_dtype']}, now float32) into {data['checkpoint']}")  # fmt: skip


@click.command("export-hf")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", "folder", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--family", type=click.Choice(EXPORT_ORDER),
              help="Hugging Face architecture to write (default: the one the model was imported from, else the first "
                   "its config maps onto).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def export_hf_command(checkpoint, folder, family, force, as_json) -> None:
    """Write a checkpoint as a Hugging Face GPT-2, Llama, Mistral, Qwen2, Qwen3 or Phi-3 folder that transformers loads.

    Example: gptdeploy export-hf runs/demo/finetune -o runs/demo/hf && python -c "from transformers import
    AutoModelForCausalLM; AutoModelForCausalLM.from_pretrained('runs/demo/hf')"
    """
    from gptdeploy.hf_export import export_hf

    result = export_hf(checkpoint, folder, family=family, force=force)
    data = {"folder": str(result.folder), "family": result.family, "files": list(result.files)}
    emit(
        data, as_json, lambda d: f"wrote a Hugging Face {d['family']} folder to {d['folder']}: {', '.join(d['files'])}"
    )
