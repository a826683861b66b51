"""gptdeploy against the tools people compare it with: the same weights, prompt and greedy decode on each.

One seeded random-weight model (Llama-shaped, so every peer can load it; `--shape gpt2-124m` for GPT-2's shape, which
onnxruntime-genai's builder does not take) is saved as a gptdeploy checkpoint, exported to a bundle (fp32,
fused for ONNX Runtime, int8, int4), written as a Hugging Face Llama folder with `export-hf`, and built by
onnxruntime-genai's model builder (fp32, int4) and, when `llama_cpp` and llama.cpp's converter are available, as
GGUF (f32, q8_0). Random weights cannot meet the quantizers' accuracy budgets, so `quantize_bundle` runs with its
budget relaxed; where a check that no budget covers still refuses (dynamic int8 makes a padded batch differ from single
prompts), the row times the same transform's graph outside the bundle and says "(unguarded)". The agreement column
measures what quantizing random weights costs.

Each row is one system and runs in its own subprocess (so peak RSS is that system's alone, and no two runtimes share
threads or allocators): batch 1, a 32-token prompt, 128 greedy tokens, a warm-up run and then `--repeats` runs, at each
thread count; medians are reported. Time to first token is the prompt pass plus picking the first token; decode
tokens/s counts the other tokens. Agreement is how many leading tokens equal the torch reference's, and where a row
diverges, the reference's top-1/top-2 logit margin at that step (a near-tie is not an error).

    python benchmarks/peers.py                                     # 8 layers, width 512, vocab 8192; 1 and 2 threads
    python benchmarks/peers.py --quick                             # a tiny shape, to check the plumbing
    python benchmarks/peers.py --only ort-fp32 genai-fp32 --threads 2 --json peers.json --plot peers.png
    python benchmarks/peers.py --profile ort-fp32                  # where one decode step's time goes
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    """Greedy decoding through gptdeploy's Runtime protocol: forward, argmax, append, the loop generate() runs."""

    def decode(prompt: np.ndarray, new_tokens: int) -> tuple[float, float, list[int]]:
        runtime.reset(1)
        mask = np.ones((1, len(prompt)), dtype=np.int64)
        started = time.perf_counter()
        tokens = [int(runtime.forward(prompt[None], mask)[0].argmax())]
        first = time.perf_counter()
        for _ in range(new_tokens - 1):
            mask = np.ones((1, mask.shape[1] + 1), dtype=np.int64)
            tokens.append(int(runtime.forward(np.array([[tokens[-1]]]), mask)[0].argmax()))
        return first - started, time.perf_counter() - first, tokens

    return decode


def row_torch(work: Path, threads: int) -> Decode:
    import torch

    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    torch.set_num_threads(threads)
    return runtime_decode(TorchRuntime.load(work / "checkpoint", max_batch_size=1))


def _ort_row(artifact: str) -> Callable[[Path, int], Decode]:
    """ONNX Runtime on the bundle's `artifact`, or on the unguarded graph made when the quantizer refused one."""

    def row(work: Path, threads: int) -> Decode:
        from gptdeploy.bundle import TOKENIZER_FILE, load_bundle
        from gptdeploy.runtimes.ort_runtime import OrtRuntime, session_options
        from gptdeploy.tokenizer import Tokenizer

        bundle = load_bundle(work / "bundle")
        tokenizer = Tokenizer.load(bundle.file(TOKENIZER_FILE))
        chosen = next((a for a in bundle.artifacts if a.name == artifact), None)
        graph = bundle.file(chosen.path) if chosen else _unguarded(work, artifact)
        precision = chosen.precision if chosen else artifact.removeprefix("onnx-")
        runtime = OrtRuntime(graph, bundle.config, tokenizer, precision=precision, max_batch_size=1,
                             options=session_options(threads))  # fmt: skip
        return runtime_decode(runtime)

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


def _llama_cpp_row(gguf: str) -> Callable[[Path, int], Decode]:
    def row(work: Path, threads: int) -> Decode:
        from llama_cpp import Llama

        llm = Llama(model_path=str(work / gguf), n_ctx=512, n_threads=threads, n_threads_batch=threads, n_batch=512,
                    seed=0, verbose=False)  # fmt: skip

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


ROWS = {
    "torch": Row("gptdeploy torch", row_torch, ("checkpoint",)),
    "ort-fp32": Row("gptdeploy ORT fp32", _ort_row("onnx-fp32"), ("bundle",)),
    "ort-fused": Row("gptdeploy ORT fused", _ort_row("onnx-fused-ort"), ("fused",)),
    "ort-int8": Row("gptdeploy ORT int8", _ort_row("onnx-int8"), ("int8",)),
    "ort-int4": Row("gptdeploy ORT int4", _ort_row("onnx-int4"), ("int4",)),
    "hf-eager": Row("transformers eager", row_hf_eager, ("hf",)),
    "genai-fp32": Row("onnxruntime-genai fp32", _genai_row("genai-fp32"), ("genai-fp32",)),
    "genai-int4": Row("onnxruntime-genai int4", _genai_row("genai-int4"), ("genai-int4",)),
    "genai-bundle": Row("onnxruntime-genai on our fp32 bundle", _genai_row("bundle"), ("genai-bundle",)),
    "llamacpp-f32": Row("llama.cpp f32", _llama_cpp_row("model-f32.gguf"), ("gguf-f32",)),
    "llamacpp-q8_0": Row("llama.cpp q8_0", _llama_cpp_row("model-q8_0.gguf"), ("gguf-q8_0",)),
}


def worker(args: argparse.Namespace) -> None:
    """One row at one thread count: load, warm up, time `repeats` runs; one JSON line on stdout."""
    work = Path(args.workdir)
    prompt = np.load(work / "prompt.npy")
    decode = ROWS[args.worker].run(work, args.threads)
    decode(prompt, args.new_tokens)
    runs = [decode(prompt, args.new_tokens) for _ in range(args.repeats)]
    ttft = statistics.median(r[0] for r in runs)
    decode_rate = statistics.median((len(r[2]) - 1) / r[1] for r in runs)
    peak_mb = peak_rss_mb()
    print(json.dumps({"ttft_ms": 1e3 * ttft, "decode_tok_s": decode_rate, "peak_rss_mb": peak_mb,
                      "tokens": runs[-1][2]}))  # fmt: skip


def peak_rss_mb() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux carries that across fork + exec, so a
    worker would report its parent's peak."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


# ----------------------------------------------------------------------------------------------- preparation
def _model_and_tokenizer(shape: str, seed: int):
    import torch

    from gptdeploy.model import GPT, GPTConfig
    from gptdeploy.tasks import generate_tasks
    from gptdeploy.tokenizer import Tokenizer

    torch.manual_seed(seed)
    model = GPT(GPTConfig(**SHAPES[shape])).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(LOGIT_SHARPENING)
    texts = [f"{e.prompt}{e.completion}" for e in generate_tasks()[0][:2000]]
    return model, Tokenizer.train(texts, vocab_size=min(1024, model.config.vocab_size))


def _relaxed(precision: str):
    """The quantizer's budget opened wide: random weights cannot meet a real one (see the module docstring)."""
    from dataclasses import replace

    from gptdeploy.parity import TOLERANCES

    inf = float("inf")
    return replace(TOLERANCES[precision], max_logit_diff=inf, mean_kl=inf, near_tie=inf, top1_agreement=0.0)


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


def _unguarded(work: Path, artifact: str) -> Path:
    return work / f"unguarded-{artifact}" / "model.onnx"


def _prepare_quantized(precision: str) -> Callable[[Path, argparse.Namespace], None]:
    """The bundle's artifact through quantize_bundle; if its guardrail still refuses (int8's dynamic activation
    ranges make a padded batch differ from single prompts on random weights), the same transform without it."""

    def prepare(work: Path, args: argparse.Namespace) -> None:
        from gptdeploy.errors import ExportError
        from gptdeploy.export import quantize_graphs
        from gptdeploy.export.quantize import quantize_bundle

        try:
            quantize_bundle(work / "bundle", precision, tasks=False, tolerance=_relaxed(precision))
        except ExportError as error:
            print(f"  the guardrail refused {precision} ({str(error)[:160]}...); timing the unguarded graph",
                  file=sys.stderr)  # fmt: skip
            target = _unguarded(work, f"onnx-{precision}")
            target.parent.mkdir(exist_ok=True)
            transform = quantize_graphs.quantize_int8_dynamic if precision == "int8" else quantize_graphs.quantize_int4
            transform(work / "bundle" / "decoder" / "model.onnx", target)

    return prepare


def _prepare_fused(work: Path, args: argparse.Namespace) -> None:
    from gptdeploy.export.fusion import optimize_bundle

    optimize_bundle(work / "bundle", "onnxruntime")


def _prepare_hf(work: Path, args: argparse.Namespace) -> None:
    from gptdeploy.hf_export import export_hf

    export_hf(work / "checkpoint", work / "hf")  # Llama for the Llama shapes, GPT-2 for gpt2-124m


def _prepare_genai_bundle(work: Path, args: argparse.Namespace) -> None:
    from gptdeploy.export.genai_config import write_bundle_genai_config

    write_bundle_genai_config(work / "bundle")


@dataclass(frozen=True)
class Step:
    run: Callable[[Path, argparse.Namespace], None]
    after: tuple[str, ...]
    done: Callable[[Path], bool]


def _has_artifact(name: str) -> Callable[[Path], bool]:
    def done(work: Path) -> bool:
        manifest = work / "bundle" / "manifest.json"
        if _unguarded(work, name).is_file():
            return True
        return manifest.is_file() and name in {a["name"] for a in json.loads(manifest.read_text())["artifacts"]}

    return done


PREPARE = {
    "checkpoint": Step(_prepare_checkpoint, (), lambda w: (w / "checkpoint" / "config.json").is_file()),
    "bundle": Step(_prepare_bundle, ("checkpoint",), lambda w: (w / "bundle" / "manifest.json").is_file()),
    "fused": Step(_prepare_fused, ("bundle",), _has_artifact("onnx-fused-ort")),
    "int8": Step(_prepare_quantized("int8"), ("bundle",), _has_artifact("onnx-int8")),
    "int4": Step(_prepare_quantized("int4"), ("bundle",), _has_artifact("onnx-int4")),
    "hf": Step(_prepare_hf, ("checkpoint",), lambda w: (w / "hf" / "config.json").is_file()),
    "genai-fp32": Step(_builder("fp32"), ("hf",), lambda w: (w / "genai-fp32" / "genai_config.json").is_file()),
    "genai-int4": Step(_builder("int4"), ("hf",), lambda w: (w / "genai-int4" / "genai_config.json").is_file()),
    "genai-bundle": Step(_prepare_genai_bundle, ("bundle",), lambda w: (w / "bundle" / "genai_config.json").is_file()),
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


def reference(work: Path, args: argparse.Namespace) -> dict:
    """The torch reference's greedy tokens and per-step top-1/top-2 margins for a prompt whose continuation has no
    eos (onnxruntime-genai stops at eos and has no switch to ignore it)."""
    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    runtime = TorchRuntime.load(work / "checkpoint", max_batch_size=1)
    rng = np.random.default_rng(args.seed)
    for _ in range(20):
        prompt = rng.integers(0, runtime.info.vocab_size, args.prompt_len)
        runtime.reset(1)
        logits = runtime.forward(prompt[None], np.ones((1, len(prompt)), dtype=np.int64))
        tokens, margins = [], []
        for step in range(args.new_tokens):
            top2 = np.sort(logits[0])[-2:]
            tokens.append(int(logits[0].argmax()))
            margins.append(float(top2[1] - top2[0]))
            if step < args.new_tokens - 1:
                mask = np.ones((1, len(prompt) + step + 1), dtype=np.int64)
                logits = runtime.forward(np.array([[tokens[-1]]]), mask)
        if runtime.tokenizer.eos_id not in tokens:
            np.save(work / "prompt.npy", prompt)
            return {"tokens": tokens, "margins": margins}
    raise RuntimeError("no prompt found whose reference continuation avoids eos")


def agreement(tokens: list[int], ref: dict) -> dict:
    expected = ref["tokens"]
    same = next((i for i, (a, b) in enumerate(zip(tokens, expected, strict=False)) if a != b), None)
    if same is None and len(tokens) == len(expected):
        return {"identical": len(expected), "of": len(expected)}
    step = same if same is not None else len(tokens)
    margin = ref["margins"][step] if step < len(expected) else None
    return {"identical": step, "of": len(expected), "reference_margin": margin}


# ----------------------------------------------------------------------------------------------- driver
@dataclass
class Result:
    row: str
    threads: int
    measured: dict = field(default_factory=dict)
    skipped: str | None = None


def measure(work: Path, row: str, threads: int, args: argparse.Namespace) -> Result:
    command = [sys.executable, __file__, "--worker", row, "--workdir", str(work), "--threads", str(threads),
               "--repeats", str(args.repeats), "--new-tokens", str(args.new_tokens)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
        return Result(row, threads, skipped=f"failed: {last}")
    return Result(row, threads, json.loads(done.stdout.strip().splitlines()[-1]))


def unguarded_rows(work: Path) -> set[str]:
    """Rows that time a quantized graph the bundle's guardrail refused (made by the same transform without it)."""
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    names = {a["name"] for a in manifest["artifacts"]}
    return {
        f"ort-{p}" for p in ("int8", "int4") if f"onnx-{p}" not in names and _unguarded(work, f"onnx-{p}").is_file()
    }


def table(results: list[Result], ref: dict, unguarded: set[str]) -> tuple[str, list[dict]]:
    baseline = {r.threads: r.measured["decode_tok_s"] for r in results if r.row == "ort-fp32" and not r.skipped}
    lines = [f"{'system':<38} {'thr':>3} {'decode tok/s':>12} {'vs ORT fp32':>11} {'TTFT ms':>8} {'peak RSS MB':>11}"
             f"  greedy agreement"]  # fmt: skip
    rows = []
    for r in results:
        label = ROWS[r.row].label + (" (unguarded)" if r.row in unguarded else "")
        if r.skipped:
            lines.append(f"{label:<38} {r.threads:>3} {'skipped: ' + r.skipped}")
            rows.append({"row": r.row, "label": label, "threads": r.threads, "skipped": r.skipped})
            continue
        m = r.measured
        ratio = m["decode_tok_s"] / baseline[r.threads] if r.threads in baseline else None
        agree = agreement(m["tokens"], ref)
        text = f"{agree['identical']}/{agree['of']}"
        if "reference_margin" in agree and agree["reference_margin"] is not None:
            text += f" (reference margin {agree['reference_margin']:.2g} at the divergence)"
        ratio_text = f"{ratio:.2f}x" if ratio else "-"
        lines.append(f"{label:<38} {r.threads:>3} {m['decode_tok_s']:>12.1f} {ratio_text:>11} {m['ttft_ms']:>8.1f} "
                     f"{m['peak_rss_mb']:>11.0f}  {text}")  # fmt: skip
        rows.append({"row": r.row, "label": label, "threads": r.threads, "decode_tok_s": m["decode_tok_s"],
                     "ratio_vs_ort_fp32": ratio, "ttft_ms": m["ttft_ms"], "peak_rss_mb": m["peak_rss_mb"],
                     "agreement": agree})  # fmt: skip
    return "\n".join(lines), rows


def bar_chart(rows: list[dict], path: str, title: str) -> None:
    """Decode tokens/s per system, one group of bars per thread count (the style of gptdeploy/plot.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gptdeploy.fileio import atomic_write

    measured = [r for r in rows if "decode_tok_s" in r]
    systems = list(dict.fromkeys(r["label"] for r in measured))
    threads = sorted({r["threads"] for r in measured})
    width = 0.8 / max(1, len(threads))
    figure, axis = plt.subplots(figsize=(max(8, len(systems) * 0.9), 4.5))
    for index, count in enumerate(threads):
        values = [next((r["decode_tok_s"] for r in measured if r["label"] == s and r["threads"] == count), 0)
                  for s in systems]  # fmt: skip
        x = np.arange(len(systems)) + (index - (len(threads) - 1) / 2) * width
        axis.bar(x, values, width, label=f"{count} thread{'s' if count > 1 else ''}", color=f"C{index}")
    axis.set_xticks(np.arange(len(systems)), systems, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("decode tokens/s (median)")
    axis.set_title(title, fontsize=9)
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)


def profile(args: argparse.Namespace) -> None:
    """Where a decode step's time goes in one row: cProfile of the timed loop, top functions by own time."""
    import cProfile
    import pstats

    work = Path(args.workdir)
    decode = ROWS[args.profile].run(work, args.threads[0])
    prompt = np.load(work / "prompt.npy")
    decode(prompt, args.new_tokens)
    profiler = cProfile.Profile()
    profiler.enable()
    _, seconds, tokens = decode(prompt, args.new_tokens)
    profiler.disable()
    print(f"{args.profile}: {len(tokens) - 1} decode steps, {1e3 * seconds / (len(tokens) - 1):.3f} ms each")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(ROWS), help="rows to run (default: all)")
    parser.add_argument("--shape", choices=list(SHAPES), default="llama-8x512")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny shape, 1 thread, 2 repeats, 32 new tokens")
    parser.add_argument("--workdir", help="keep (and reuse) the prepared models here instead of a temporary folder")
    parser.add_argument("--llama-cpp-convert", help="llama.cpp's convert_hf_to_gguf.py, for the llama.cpp rows")
    parser.add_argument("--json", help="write settings and rows to this JSON file")
    parser.add_argument("--plot", help="draw decode tokens/s to this PNG")
    parser.add_argument("--profile", choices=list(ROWS), help="profile one row's decode loop instead")
    parser.add_argument("--worker", choices=list(ROWS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.shape, args.threads, args.repeats, args.new_tokens = "tiny", [1], 2, 32
    if isinstance(args.threads, int):
        args.threads = [args.threads]
    return args


def main() -> None:
    args = parse_args()
    if args.worker:
        args.threads = args.threads[0]
        worker(args)
        return
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    rows = [args.profile] if args.profile else args.only or list(ROWS)
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="peers."))
    work.mkdir(parents=True, exist_ok=True)
    settings = {"shape": args.shape, "seed": args.seed, "prompt_len": args.prompt_len, "new_tokens": args.new_tokens}
    stored = work / "settings.json"
    if stored.is_file() and json.loads(stored.read_text()) != settings:
        sys.exit(f"{work} was prepared with {stored.read_text().strip()}; use another --workdir")
    stored.write_text(json.dumps(settings))
    try:
        needed = {"checkpoint"} | {step for row in rows for step in ROWS[row].needs}
        failed = prepare(work, needed, args)
        if "checkpoint" in failed:
            sys.exit(f"cannot build the model: {failed['checkpoint']}")
        ref = reference(work, args)
        if args.profile:
            profile(args)
            return
        results = []
        for threads in args.threads:
            for row in rows:
                missing = [failed[step] for step in ROWS[row].needs if step in failed]
                if missing:
                    results.append(Result(row, threads, skipped=missing[0]))
                    continue
                print(f"measuring {row} at {threads} thread(s)...", file=sys.stderr, flush=True)
                results.append(measure(work, row, threads, args))
        text, table_rows = table(results, ref, unguarded_rows(work) if (work / "bundle").is_dir() else set())
        print(text)
        if args.json:
            document = {"settings": {**settings, "threads": args.threads, "repeats": args.repeats},
                        "versions": versions(), "reference": ref, "rows": table_rows}  # fmt: skip
            Path(args.json).write_text(json.dumps(document, indent=2))
        if args.plot:
            bar_chart(table_rows, args.plot, f"{args.shape}, batch 1, {args.prompt_len}-token prompt + "
                      f"{args.new_tokens} new tokens (median of {args.repeats})")  # fmt: skip
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("gptdeploy", "torch", "onnxruntime", "onnxruntime-genai", "transformers", "llama_cpp_python"):
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found


if __name__ == "__main__":
    main()
