"""The systems benchmarks/peers.py compares: how each one loads and greedily decodes (a row), and the steps that
build what it loads from one seeded random-weight model (checkpoint, bundle, Hugging Face folder, onnxruntime-genai
and GGUF models).

Every step writes under one work folder and is skipped when its output is already there, so `--workdir` reuses them.
The int8 and int4 rows are unguarded graphs of random weights: gptdeploy's transforms applied straight to the bundle's
fp32 graph, with no accuracy budget or guardrail, because random weights cannot meet one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gptdeploy.bundle import Bundle

Decode = Callable[[np.ndarray, int], tuple[float, float, list[int]]]  # (prompt, new tokens) -> (ttft, decode s, ids)
SHAPES = {
    "llama-8x512": dict(vocab_size=8192, block_size=512, n_layer=8, n_head=8, n_embd=512, positions="rope",
                        norm="rmsnorm", mlp="swiglu", bias=False, tie_embeddings=False),
    "gpt2-124m": dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
    "tiny": dict(vocab_size=2048, block_size=256, n_layer=2, n_head=4, n_embd=128, positions="rope", norm="rmsnorm",
                 mlp="swiglu", bias=False, tie_embeddings=False),
}  # fmt: skip
LOGIT_SHARPENING = 10.0  # the random LM head is scaled so greedy choices are decisive (speed is unaffected)


# ----------------------------------------------------------------------------------------------- rows (in workers)
def runtime_decode(runtime) -> Decode:
    """Greedy decoding through gptdeploy's Runtime protocol: prefill a slot, then decode it one argmax at a time
    (the calls the engine makes for one request)."""

    def decode(prompt: np.ndarray, new_tokens: int) -> tuple[float, float, list[int]]:
        runtime.reset()
        started = time.perf_counter()
        tokens = [int(runtime.prefill(0, prompt).argmax())]
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            tokens.append(int(runtime.decode([0], tokens[-1:])[0].argmax()))
        return first - started, time.perf_counter() - first, tokens

    return decode


def row_torch(work: Path, threads: int) -> Decode:
    import torch

    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    torch.set_num_threads(threads)
    return runtime_decode(TorchRuntime.load(work / "checkpoint", max_slots=1))


def _ort_decode(bundle: Bundle, graph: Path, precision: str, threads: int) -> Decode:
    """ONNX Runtime on `graph`, with the bundle's config and tokenizer."""
    from gptdeploy.runtimes.ort_runtime import open_graph, session_options
    from gptdeploy.tokenizer import Tokenizer

    runtime = open_graph(graph, bundle.config, Tokenizer.load(bundle.path), precision=precision, max_slots=1,
                         options=session_options(threads))  # fmt: skip
    return runtime_decode(runtime)


def _ort_row(artifact: str) -> Callable[[Path, int], Decode]:
    """ONNX Runtime on the bundle's artifact called `artifact`."""

    def row(work: Path, threads: int) -> Decode:
        from gptdeploy.bundle import load_bundle

        bundle = load_bundle(work / "bundle")
        chosen = bundle.artifact(name=artifact)
        return _ort_decode(bundle, bundle.file(chosen.path), chosen.precision, threads)

    return row


def _unguarded_row(precision: str) -> Callable[[Path, int], Decode]:
    """ONNX Runtime on the unguarded `precision` graph (see _prepare_unguarded)."""

    def row(work: Path, threads: int) -> Decode:
        from gptdeploy.bundle import load_bundle

        return _ort_decode(load_bundle(work / "bundle"), unguarded_graph(work, precision), precision, threads)

    return row


def row_hf_eager(work: Path, threads: int) -> Decode:
    """transformers' model in eager attention, decoded with its own cache, one argmax per step (no generate()
    overhead: this is the model's speed, not its sampling pipeline's)."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(work / "hf", attn_implementation="eager").eval()

    @torch.inference_mode()
    def decode(prompt: np.ndarray, new_tokens: int) -> tuple[float, float, list[int]]:
        started = time.perf_counter()
        output = model(torch.from_numpy(prompt)[None], use_cache=True)
        tokens = [int(output.logits[0, -1].argmax())]
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            output = model(torch.tensor([[tokens[-1]]]), cache=output.past_key_values, use_cache=True)
            tokens.append(int(output.logits[0, -1].argmax()))
        return first - started, time.perf_counter() - first, tokens

    return decode


def _genai_row(folder: str) -> Callable[[Path, int], Decode]:
    def row(work: Path, threads: int) -> Decode:
        import onnxruntime_genai as og

        config = og.Config(str(work / folder))
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
        model = og.Model(config)

        def decode(prompt: np.ndarray, new_tokens: int) -> tuple[float, float, list[int]]:
            params = og.GeneratorParams(model)
            params.set_search_options(max_length=len(prompt) + new_tokens, do_sample=False)
            generator = og.Generator(model, params)
            started = time.perf_counter()
            generator.append_tokens(prompt.astype(np.int32))
            generator.generate_next_token()
            first = time.perf_counter()
            for _ in range(new_tokens - 1):
                if generator.is_done():  # eos: the reference prompt avoids it, a quantized model may not
                    break
                generator.generate_next_token()
            ended = time.perf_counter()
            return first - started, ended - first, [int(t) for t in generator.get_sequence(0)[len(prompt) :]]

        return decode

    return row


def _llama_cpp_row(gguf: str, cache: dict) -> Callable[[Path, int], Decode]:
    """llama.cpp through llama-cpp-python; `cache` sets its KV cache type (f32 for the f32 row: its default f16
    cache drifts from the reference; the default for q8_0, the configuration people run)."""

    def row(work: Path, threads: int) -> Decode:
        from llama_cpp import Llama

        llm = Llama(model_path=str(work / gguf), n_ctx=512, n_threads=threads, n_threads_batch=threads, n_batch=512,
                    seed=0, verbose=False, **cache)  # fmt: skip

        def decode(prompt: np.ndarray, new_tokens: int) -> tuple[float, float, list[int]]:
            llm.reset()
            started = time.perf_counter()
            stream = llm.generate(prompt.tolist(), top_k=1, temp=0.0, repeat_penalty=1.0, reset=True)
            tokens = [next(stream)]
            first = time.perf_counter()
            for token in stream:
                tokens.append(token)
                if len(tokens) == new_tokens:
                    break
            return first - started, time.perf_counter() - first, tokens

        return decode

    return row


@dataclass(frozen=True)
class Row:
    label: str
    run: Callable[[Path, int], Decode]
    needs: tuple[str, ...]  # preparation steps (see PREPARE)
    unguarded: bool = False  # times a quantized graph that no accuracy budget checked (random weights)


ROWS = {
    "torch": Row("gptdeploy torch", row_torch, ("checkpoint",)),
    "ort-fp32": Row("gptdeploy ORT fp32 (exported graph)", _ort_row("onnx-fp32"), ("bundle",)),
    "ort-fused": Row("gptdeploy ORT fp32 (slot graph)", _ort_row("onnx-fused-ort"), ("fused",)),
    "ort-int8": Row("gptdeploy ORT int8", _unguarded_row("int8"), ("int8",), unguarded=True),
    "ort-int4": Row("gptdeploy ORT int4", _unguarded_row("int4"), ("int4",), unguarded=True),
    "hf-eager": Row("transformers eager", row_hf_eager, ("hf",)),
    "genai-fp32": Row("onnxruntime-genai fp32", _genai_row("genai-fp32"), ("genai-fp32",)),
    "genai-int4": Row("onnxruntime-genai int4", _genai_row("genai-int4"), ("genai-int4",)),
    "genai-bundle": Row("onnxruntime-genai on our slot graph", _genai_row("bundle/decoder-fused-ort"), ("fused",)),
    "llamacpp-f32": Row(
        "llama.cpp f32, f32 KV cache", _llama_cpp_row("model-f32.gguf", {"type_k": 0, "type_v": 0}), ("gguf-f32",)
    ),
    "llamacpp-q8_0": Row("llama.cpp q8_0", _llama_cpp_row("model-q8_0.gguf", {}), ("gguf-q8_0",)),
}


# ----------------------------------------------------------------------------------------------- preparation
def _model_and_tokenizer(shape: str, seed: int):
    import torch

    from gptdeploy.corpus.tasks import generate_tasks
    from gptdeploy.model import GPT, GPTConfig
    from gptdeploy.tokenizer import Tokenizer

    torch.manual_seed(seed)
    model = GPT(GPTConfig(**SHAPES[shape])).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(LOGIT_SHARPENING)
    texts = [f"{e.prompt}{e.completion}" for e in generate_tasks()[0][:2000]]
    return model, Tokenizer.train(texts, vocab_size=min(1024, model.config.vocab_size))


def _run_tool(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
        raise RuntimeError(f"{' '.join(command[1:3])} failed: {last}")


def _builder(precision: str) -> Callable[[Path, argparse.Namespace], None]:
    def build(work: Path, args: argparse.Namespace) -> None:
        _run_tool([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(work / "hf"),
                   "-o", str(work / f"genai-{precision}"), "-p", precision, "-e", "cpu",
                   "-c", str(work / "genai-cache")])  # fmt: skip

    return build


def _gguf(outtype: str) -> Callable[[Path, argparse.Namespace], None]:
    def build(work: Path, args: argparse.Namespace) -> None:
        import llama_cpp  # noqa: F401  (only worth converting when the runtime is there)

        if not args.llama_cpp_convert:
            raise RuntimeError("pass --llama-cpp-convert PATH/convert_hf_to_gguf.py (from a llama.cpp checkout)")
        _run_tool([sys.executable, args.llama_cpp_convert, str(work / "hf"), "--outtype", outtype, "--outfile",
                   str(work / f"model-{outtype}.gguf")])  # fmt: skip

    return build


def _prepare_checkpoint(work: Path, args: argparse.Namespace) -> None:
    from gptdeploy.checkpoint import save_checkpoint

    model, tokenizer = _model_and_tokenizer(args.shape, args.seed)
    save_checkpoint(work / "checkpoint", model, tokenizer, {"stage": "peers benchmark", "shape": args.shape})


def _prepare_bundle(work: Path, args: argparse.Namespace) -> None:
    from gptdeploy.export.pipeline import export_bundle

    export_bundle(work / "checkpoint", work / "bundle", tasks=False)


def unguarded_graph(work: Path, precision: str) -> Path:
    return work / f"unguarded-{precision}" / "model.onnx"


def _prepare_unguarded(precision: str) -> Callable[[Path, argparse.Namespace], None]:
    """The quantizer's int8 (dynamic) or int4 transform on the bundle's slot graph (what `gptdeploy quantize --from
    onnx-fused-ort` transforms), outside the bundle: no layer sweep, no parity check (random weights cannot meet a
    budget). Written to a staging folder, then renamed."""

    def prepare(work: Path, args: argparse.Namespace) -> None:
        from gptdeploy.bundle import load_bundle
        from gptdeploy.export.quantize_transforms import quantize_int4, quantize_int8_dynamic

        bundle = load_bundle(work / "bundle")
        source = bundle.file(bundle.artifact(name="onnx-fused-ort").path)
        target = unguarded_graph(work, precision)
        staging = target.parent.with_name(f".{target.parent.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        transform = quantize_int8_dynamic if precision == "int8" else quantize_int4
        transform(source, staging / target.name)
        os.replace(staging, target.parent)

    return prepare


def _prepare_fused(work: Path, args: argparse.Namespace) -> None:
    from gptdeploy.export.fusion import optimize_bundle

    optimize_bundle(work / "bundle", "onnxruntime")


def _prepare_hf(work: Path, args: argparse.Namespace) -> None:
    from gptdeploy.hf_export import export_hf

    export_hf(work / "checkpoint", work / "hf")  # Llama for the Llama shapes, GPT-2 for gpt2-124m


@dataclass(frozen=True)
class Step:
    run: Callable[[Path, argparse.Namespace], None]
    after: tuple[str, ...]
    done: Callable[[Path], bool]


def _has_artifact(name: str) -> Callable[[Path], bool]:
    def done(work: Path) -> bool:
        manifest = work / "bundle" / "manifest.json"
        return manifest.is_file() and name in {a["name"] for a in json.loads(manifest.read_text())["artifacts"]}

    return done


PREPARE = {
    "checkpoint": Step(_prepare_checkpoint, (), lambda w: (w / "checkpoint" / "config.json").is_file()),
    "bundle": Step(_prepare_bundle, ("checkpoint",), lambda w: (w / "bundle" / "manifest.json").is_file()),
    "fused": Step(_prepare_fused, ("bundle",), _has_artifact("onnx-fused-ort")),
    "int8": Step(_prepare_unguarded("int8"), ("fused",), lambda w: unguarded_graph(w, "int8").is_file()),
    "int4": Step(_prepare_unguarded("int4"), ("fused",), lambda w: unguarded_graph(w, "int4").is_file()),
    "hf": Step(_prepare_hf, ("checkpoint",), lambda w: (w / "hf" / "config.json").is_file()),
    "genai-fp32": Step(_builder("fp32"), ("hf",), lambda w: (w / "genai-fp32" / "genai_config.json").is_file()),
    "genai-int4": Step(_builder("int4"), ("hf",), lambda w: (w / "genai-int4" / "genai_config.json").is_file()),
    "gguf-f32": Step(_gguf("f32"), ("hf",), lambda w: (w / "model-f32.gguf").is_file()),
    "gguf-q8_0": Step(_gguf("q8_0"), ("hf",), lambda w: (w / "model-q8_0.gguf").is_file()),
}


def prepare(work: Path, needed: set[str], args: argparse.Namespace) -> dict[str, str]:
    """Run the preparation steps the chosen rows need (each once, dependencies first); step -> why it failed."""
    failed: dict[str, str] = {}

    def ensure(name: str) -> bool:
        if name in failed:
            return False
        step = PREPARE[name]
        for dependency in step.after:
            if not ensure(dependency):
                failed[name] = failed[dependency]
                return False
        if step.done(work):
            return True
        print(f"preparing {name}...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            step.run(work, args)
        except ModuleNotFoundError as error:
            failed[name] = f"{error.name} is not installed"
            return False
        except Exception as error:  # a peer's tool failing must cost its row, not the benchmark
            failed[name] = f"{name}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            return False
        print(f"  {name} ready in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        return True

    for name in sorted(needed):
        ensure(name)
    return failed
