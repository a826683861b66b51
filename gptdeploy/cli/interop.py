"""Commands that move models between gptdeploy and other tools: import-hf, export-hf (Hugging Face folders) and
export-gguf (llama.cpp)."""

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


@click.command("export-gguf")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--out", "path", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--type", "gguf_type", type=click.Choice(["f32", "f16", "q8_0"]), default="f32", show_default=True,
              help="Weight matrices in f32, f16 or q8_0 (8-bit blocks of 32); norms and biases stay f32.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON document.")
def export_gguf_command(checkpoint, path, gguf_type, force, as_json) -> None:
    """Write a checkpoint as one GGUF file for llama.cpp (and Ollama, LM Studio, ...). Needs gptdeploy[gguf].

    Example: gptdeploy export-gguf runs/demo/finetune -o demo-q8_0.gguf --type q8_0 && llama-cli -m demo-q8_0.gguf
    """
    from gptdeploy.gguf_export import export_gguf

    result = export_gguf(checkpoint, path, gguf_type=gguf_type, force=force)
    data = {"path": str(result.path), "architecture": result.architecture, "type": result.type,
            "pre_tokenizer": result.pre_tokenizer, "tensors": result.tensors,
            "size_bytes": result.size_bytes}  # fmt: skip
    emit(data, as_json, lambda d: f"wrote {d['path']} ({d['architecture']}, {d['type']}, {d['tensors']} tensors, "
                                  f"{d['size_bytes'] / 1e6:.2f} MB, pre-tokenizer {d['pre_tokenizer']})")  # fmt: skip
