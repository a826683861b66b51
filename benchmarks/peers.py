"""gptdeploy against the tools people compare it with: the same weights, prompt and greedy decode on each.

One seeded random-weight model (Llama-shaped, so every peer can load it; `--shape gpt2-124m` for GPT-2's shape, which
onnxruntime-genai's builder does not take) is saved as a gptdeploy checkpoint, exported to a bundle (fp32, fused for
ONNX Runtime), written as a Hugging Face Llama folder with `export-hf`, and built by onnxruntime-genai's model builder
(fp32, int4) and, when `llama_cpp` and llama.cpp's converter are available, as GGUF (f32, q8_0). The int8 and int4
rows are unguarded graphs of random weights: gptdeploy's int8 (dynamic) and int4 transforms applied straight to the
bundle's fp32 graph, outside the bundle, since random weights cannot meet the accuracy budgets `gptdeploy quantize`
holds an artifact to. They time what the transforms make; their agreement column measures what quantizing random
weights costs.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from peer_systems import ROWS, SHAPES, prepare

# each gptdeploy row against the peer it must keep up with (the same precision class)
PEERS = {"ort-fused": "genai-fp32", "ort-fp32": "genai-fp32", "ort-int4": "genai-int4", "ort-int8": "llamacpp-q8_0",
         "torch": "hf-eager"}  # fmt: skip
UNGUARDED_NOTE = ("(unguarded): the quantizer's transform applied to the random weights' fp32 graph, checked against "
                  "no accuracy budget")  # fmt: skip


# ----------------------------------------------------------------------------------------------- worker
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


# ----------------------------------------------------------------------------------------------- reference
def reference(work: Path, args: argparse.Namespace) -> dict:
    """The torch reference's greedy tokens and per-step top-1/top-2 margins for a prompt whose continuation has no
    eos (onnxruntime-genai stops at eos and has no switch to ignore it)."""
    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    runtime = TorchRuntime.load(work / "checkpoint", max_slots=1)
    rng = np.random.default_rng(args.seed)
    for _ in range(20):
        prompt = rng.integers(0, runtime.info.vocab_size, args.prompt_len)
        runtime.reset()
        logits = runtime.prefill(0, prompt)
        tokens, margins = [], []
        for step in range(args.new_tokens):
            top2 = np.sort(logits)[-2:]
            tokens.append(int(logits.argmax()))
            margins.append(float(top2[1] - top2[0]))
            if step < args.new_tokens - 1:
                logits = runtime.decode([0], tokens[-1:])[0]
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


def table(results: list[Result], ref: dict) -> tuple[str, list[dict]]:
    measured = {(r.row, r.threads): r.measured["decode_tok_s"] for r in results if not r.skipped}
    baseline = {r.threads: r.measured["decode_tok_s"] for r in results if r.row == "ort-fp32" and not r.skipped}
    lines = [f"{'system':<38} {'thr':>3} {'decode tok/s':>12} {'vs ORT fp32':>11} {'vs its peer':>21} {'TTFT ms':>8} "
             f"{'peak RSS MB':>11}  greedy agreement"]  # fmt: skip
    rows = []
    for r in results:
        label = ROWS[r.row].label + (" (unguarded)" if ROWS[r.row].unguarded else "")
        if r.skipped:
            lines.append(f"{label:<38} {r.threads:>3} {'skipped: ' + r.skipped}")
            rows.append({"row": r.row, "label": label, "threads": r.threads, "skipped": r.skipped})
            continue
        m = r.measured
        ratio = m["decode_tok_s"] / baseline[r.threads] if r.threads in baseline else None
        peer = PEERS.get(r.row)
        peer_ratio = m["decode_tok_s"] / measured[peer, r.threads] if (peer, r.threads) in measured else None
        peer_text = f"{peer_ratio:.2f}x {peer}" if peer_ratio else "-"
        agree = agreement(m["tokens"], ref)
        text = f"{agree['identical']}/{agree['of']}"
        if "reference_margin" in agree and agree["reference_margin"] is not None:
            text += f" (reference margin {agree['reference_margin']:.2g} at the divergence)"
        ratio_text = f"{ratio:.2f}x" if ratio else "-"
        lines.append(f"{label:<38} {r.threads:>3} {m['decode_tok_s']:>12.1f} {ratio_text:>11} {peer_text:>21} "
                     f"{m['ttft_ms']:>8.1f} {m['peak_rss_mb']:>11.0f}  {text}")  # fmt: skip
        rows.append({"row": r.row, "label": label, "threads": r.threads, "decode_tok_s": m["decode_tok_s"],
                     "ratio_vs_ort_fp32": ratio, "peer": peer, "ratio_vs_peer": peer_ratio, "ttft_ms": m["ttft_ms"],
                     "peak_rss_mb": m["peak_rss_mb"], "agreement": agree})  # fmt: skip
    if any(ROWS[r.row].unguarded for r in results):
        lines.append(UNGUARDED_NOTE)
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
        text, table_rows = table(results, ref)
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
