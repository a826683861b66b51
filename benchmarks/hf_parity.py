"""Hugging Face families through every runtime gptdeploy builds for: each artifact against transformers' own logits.

One random model per family (GPT-2, Llama, Mistral, Qwen2, Qwen3, Phi-3), each with an odd shape, is built with
transformers, imported with `import-hf`, exported to a bundle, fused for both targets, quantized, and written as GGUF.
Every artifact runs the same prompt; the table gives its largest logit difference relative to transformers' largest
logit, its top-1 agreement over the prompt's positions, and how many of transformers' 32 greedy tokens it reproduces.
The quantized ONNX graphs are the quantizer's transforms applied straight to the fp32 graph (no guardrail: random
weights cannot meet an accuracy budget); `--init` sets the weights' scale (transformers' own default is 0.02; 0.5 makes
random next-token choices decisive, which fp32 greedy comparisons want and quantization suffers from).

    python benchmarks/hf_parity.py                       # every family, --init 0.5
    python benchmarks/hf_parity.py --init 0.02 --only qwen3 phi3 --json parity.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers

PROMPT = "Mia lives in Riverton with Tom. They have 12 apples and a brown dog named Pip"
STEPS = 32
CALIBRATION_TEXTS = [PROMPT, "The market in Hillford opens on Monday.", "Tom gave 5 apples to Mia."]
# Odd shapes whose head sizes ONNX Runtime's GroupQueryAttention runs (multiples of 16 with rotary positions); a
# family whose fusion is refused gets a "refused" row with the reason.
FAMILIES = {  # family -> (config class, model class, odd shape)
    "gpt2": ("GPT2Config", "GPT2LMHeadModel", dict(n_embd=48, n_head=3, n_inner=100, n_layer=2, n_positions=128)),
    "llama": ("LlamaConfig", "LlamaForCausalLM", dict(num_attention_heads=4, num_key_value_heads=2,
                                                     intermediate_size=88)),
    "mistral": ("MistralConfig", "MistralForCausalLM", dict(hidden_size=48, num_attention_heads=3,
                                                           num_key_value_heads=1, intermediate_size=72)),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_attention_heads=4, num_key_value_heads=2,
                                                     intermediate_size=100, tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                                     intermediate_size=88)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", dict(hidden_size=80, num_attention_heads=5, num_key_value_heads=5,
                                                  intermediate_size=120, pad_token_id=None)),
}  # fmt: skip


def hf_folder(folder: Path, family: str, init: float):
    """A random model of `family` (vocabulary 331, 2 layers), saved with a byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    config_class, model_class, shape = FAMILIES[family]
    common = {} if family == "gpt2" else dict(hidden_size=64, num_hidden_layers=2, max_position_embeddings=128)
    torch.manual_seed(0)
    config = getattr(transformers, config_class)(vocab_size=331, bos_token_id=1, eos_token_id=2,
                                                 initializer_range=init, **{**common, **shape})  # fmt: skip
    model = getattr(transformers, model_class)(config).eval()
    model.save_pretrained(folder)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    backend.train_from_iterator(CALIBRATION_TEXTS * 20, trainer)
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>").save_pretrained(
        folder
    )
    return model


def greedy(step: Callable[[list[int]], np.ndarray], ids: list[int]) -> list[int]:
    """Greedy tokens from a function that returns the next-token logits after feeding `ids` (full recompute)."""
    tokens = []
    for _ in range(STEPS):
        tokens.append(int(step(ids + tokens).argmax()))
    return tokens


def measure(logits: np.ndarray, tokens: list[int], reference: dict) -> dict:
    expected = reference["logits"]
    leading = next((i for i, (a, b) in enumerate(zip(tokens, reference["tokens"], strict=True)) if a != b), STEPS)
    return {"rel_logit_diff": float(np.abs(logits - expected).max() / np.abs(expected).max()),
            "top1": float((logits.argmax(-1) == expected.argmax(-1)).mean()),
            "greedy": f"{leading}/{STEPS}"}  # fmt: skip


def onnx_rows(work: Path, reference: dict, ids: list[int]) -> dict:
    """fp32 and both fusions as the pipeline builds them; each quantization transform applied without its guardrail
    to the graph the product quantizes (int8 and int4 from the slot graph, the others from the fp32 export)."""
    from gptdeploy.bundle import load_bundle
    from gptdeploy.errors import ExportError
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.quantize import calibration_reader
    from gptdeploy.export.quantize_transforms import (
        convert_fp16,
        quantize_int4,
        quantize_int8_dynamic,
        quantize_int8_static,
    )
    from gptdeploy.runtimes.ort_runtime import open_graph

    rows = {}
    for target in ("onnxruntime", "tensorrt"):
        try:
            optimize_bundle(work / "bundle", target)
        except ExportError as error:
            rows[f"onnxruntime fused for {target}"] = {"skipped": f"refused: {error}"}
    bundle = load_bundle(work / "bundle")
    names = [artifact.name for artifact in bundle.artifacts]
    graphs = {name: (bundle.file(bundle.artifact(name=name).path), "fp32") for name in names}
    fp32 = graphs["onnx-fp32"][0]
    slots = graphs.get("onnx-fused-ort", (None,))[0]
    tokenizer = reference["tokenizer"]
    transforms = {
        "int8": (slots, quantize_int8_dynamic),
        "int8-static": (fp32, lambda s, t: quantize_int8_static(s, t, reader=lambda: calibration_reader(
            bundle.config, tokenizer, CALIBRATION_TEXTS))),
        "fp16": (fp32, convert_fp16),
        "int4": (slots, quantize_int4),
    }  # fmt: skip
    for precision, (source, transform) in transforms.items():
        if source is None:
            continue
        target = work / f"unguarded-{precision}" / "model.onnx"
        target.parent.mkdir()
        transform(source, target)
        graphs[f"onnx-{precision} (unguarded)"] = (target, precision.split("-")[0])
    for name, (graph, precision) in graphs.items():
        with open_graph(graph, bundle.config, tokenizer, precision=precision) as runtime:

            def step(tokens: list[int], runtime=runtime) -> np.ndarray:
                runtime.reset()
                return runtime.prefill(0, tokens)

            runtime.reset()
            logits = runtime.prefill(0, ids, all_logits=True)
            rows[f"onnxruntime {name}"] = measure(logits, greedy(step, ids), reference)
    return rows


def llama_cpp_rows(work: Path, reference: dict, ids: list[int]) -> dict:
    if importlib.util.find_spec("llama_cpp") is None:
        return {"llama.cpp": {"skipped": "llama_cpp is not installed"}}
    from llama_cpp import Llama

    from gptdeploy.gguf_export import export_gguf

    rows = {}
    for gguf_type in ("f32", "f16", "q8_0"):
        result = export_gguf(work / "checkpoint", work / f"model-{gguf_type}.gguf", gguf_type)
        llm = Llama(model_path=str(result.path), n_ctx=256, logits_all=True, type_k=0, type_v=0, verbose=False)

        def step(tokens: list[int], llm=llm) -> np.ndarray:
            llm.reset()
            llm.eval(tokens)
            return np.array(llm.scores[len(tokens) - 1])

        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[: len(ids)])
        rows[f"llama.cpp {result.architecture} {gguf_type}"] = measure(logits, greedy(step, ids), reference)
    return rows


def family_rows(family: str, init: float, root: Path) -> dict:
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from gptdeploy.hf_import import import_hf

    work = root / family
    model = hf_folder(work / "hf", family, init)
    checkpoint = import_hf(work / "hf", work / "checkpoint").checkpoint
    loaded = load_checkpoint(checkpoint)
    ids = loaded.tokenizer.encode(PROMPT, bos=True)

    def transformers_step(tokens: list[int]) -> np.ndarray:
        with torch.no_grad():
            return model(torch.tensor([tokens])).logits[0, -1].numpy()

    def torch_step(tokens: list[int]) -> np.ndarray:
        with torch.no_grad():
            return loaded.model(torch.tensor([tokens]))[0][0, -1].numpy()

    with torch.no_grad():
        expected = model(torch.tensor([ids])).logits[0].numpy()
        ours = loaded.model(torch.tensor([ids]))[0][0].numpy()
    reference = {"logits": expected, "tokens": greedy(transformers_step, ids), "tokenizer": loaded.tokenizer}
    rows = {"torch fp32": measure(ours, greedy(torch_step, ids), reference)}
    export_bundle(checkpoint, work / "bundle", tasks=False)
    rows |= onnx_rows(work, reference, ids)
    rows |= llama_cpp_rows(work, reference, ids)
    if importlib.util.find_spec("tensorrt") is None:
        rows["tensorrt"] = {"skipped": "TensorRT is not installed (no GPU here)"}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init", type=float, default=0.5, help="initializer_range of the random weights")
    parser.add_argument("--only", nargs="+", choices=sorted(FAMILIES), help="families to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the table as JSON")
    args = parser.parse_args()
    table = {}
    with tempfile.TemporaryDirectory(prefix="hf-parity-") as tmp:
        for family in args.only or FAMILIES:
            table[family] = family_rows(family, args.init, Path(tmp))
            print(f"\n{family} (init {args.init}): {'runtime / variant':<40} {'rel diff':>9} {'top-1':>7} greedy")
            for row, values in table[family].items():
                if "skipped" in values:
                    print(f"  {row:<48} skipped: {values['skipped']}")
                else:
                    print(f"  {row:<48} {values['rel_logit_diff']:>9.1e} {values['top1']:>7.1%} {values['greedy']}")
    if args.json:
        args.json.write_text(json.dumps({"init": args.init, "families": table}, indent=2) + "\n")


if __name__ == "__main__":
    main()
