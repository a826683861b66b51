"""Torch runtime with its pre-allocated KV cache against a no-cache baseline (full recompute every step).

Both run the same random-weight model on the same random prompt, one after the other, at 1 and 2 threads;
each measurement is repeated and the median is kept. Prints prefill and decode tokens/s and the decode speed-up.

    python benchmarks/kv_cache.py                       # small and gpt2-124m, batch 1 and 8
    python benchmarks/kv_cache.py --presets small --repeats 5 --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch

from gptdeploy.model import GPT, GPTConfig
from gptdeploy.runtimes.base import Runtime
from gptdeploy.runtimes.torch_runtime import TorchRuntime


def run_cached(runtime: Runtime, prompt: np.ndarray, new_tokens: int) -> tuple[float, float]:
    """Seconds for the prefill and for `new_tokens` greedy decode steps through the runtime's cache."""
    batch = prompt.shape[0]
    runtime.reset(batch)
    mask = np.ones_like(prompt)
    started = time.perf_counter()
    logits = runtime.forward(prompt, mask)
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        mask = np.concatenate([mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
        logits = runtime.forward(logits.argmax(-1)[:, None], mask)
    return prefill, time.perf_counter() - started


@torch.inference_mode()
def run_recompute(model: GPT, prompt: np.ndarray, new_tokens: int) -> tuple[float, float]:
    """The baseline: every step runs the model over the whole sequence so far."""
    ids = torch.from_numpy(prompt)
    started = time.perf_counter()
    logits = model(ids)[0][:, -1]
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        ids = torch.cat([ids, logits.argmax(-1)[:, None]], dim=1)
        logits = model(ids)[0][:, -1]
    return prefill, time.perf_counter() - started


def measure(preset: str, batch: int, threads: int, args: argparse.Namespace) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset(preset)).eval()
    runtime = TorchRuntime(model, tokenizer=None, max_batch_size=batch)
    prompt = np.random.default_rng(0).integers(0, model.config.vocab_size, (batch, args.prompt_len))
    row = {"preset": preset, "batch": batch, "threads": threads}
    for mode, run in (("cache", lambda: run_cached(runtime, prompt, args.new_tokens)),
                      ("recompute", lambda: run_recompute(model, prompt, args.new_tokens))):  # fmt: skip
        run()  # warm-up
        timings = [run() for _ in range(args.repeats)]
        prefill = statistics.median(t[0] for t in timings)
        decode = statistics.median(t[1] for t in timings)
        row[f"{mode}_prefill_tok_s"] = batch * args.prompt_len / prefill
        row[f"{mode}_decode_tok_s"] = batch * args.new_tokens / decode
    row["decode_speedup"] = row["cache_decode_tok_s"] / row["recompute_decode_tok_s"]
    row["prefill_ratio"] = row["cache_prefill_tok_s"] / row["recompute_prefill_tok_s"]
    return row


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['preset']}\nB={r['batch']} t={r['threads']}" for r in rows]
    x = np.arange(len(rows))
    figure, axis = plt.subplots(figsize=(max(6, len(rows) * 1.2), 4))
    axis.bar(x - 0.2, [r["cache_decode_tok_s"] for r in rows], 0.4, label="KV cache")
    axis.bar(x + 0.2, [r["recompute_decode_tok_s"] for r in rows], 0.4, label="full recompute")
    axis.set_xticks(x, labels, fontsize=8)
    axis.set_yscale("log")
    axis.set_ylabel("decode tokens/s (median)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "gpt2-124m"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--plot", help="also draw decode tokens/s to this PNG")
    args = parser.parse_args()

    rows = []
    header = f"{'preset':<10} {'B':>2} {'thr':>3} | {'prefill tok/s cache':>19} {'recompute':>10} | "
    header += f"{'decode tok/s cache':>18} {'recompute':>10} {'speed-up':>9}"
    print(header)
    for preset in args.presets:
        for batch in args.batch_sizes:
            for threads in args.threads:
                print(f"measuring {preset} batch {batch} threads {threads}...", file=sys.stderr, flush=True)
                r = measure(preset, batch, threads, args)
                rows.append(r)
                print(f"{preset:<10} {batch:>2} {threads:>3} | {r['cache_prefill_tok_s']:>19,.0f} "
                      f"{r['recompute_prefill_tok_s']:>10,.0f} | {r['cache_decode_tok_s']:>18,.0f} "
                      f"{r['recompute_decode_tok_s']:>10,.0f} {r['decode_speedup']:>8.2f}x", flush=True)  # fmt: skip
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"settings": vars(args), "rows": rows}, out, indent=2)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
