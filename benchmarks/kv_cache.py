"""Torch runtime with its pre-allocated KV cache against a no-cache baseline (full recompute every step).

Both run the same random-weight model on the same random prompt, one after the other, at 1 and 2 threads;
each measurement is repeated and the median is kept. Prints prefill and decode tokens/s and the decode speed-up.

    python benchmarks/kv_cache.py                       # small and gpt2-124m, batch 1 and 8
    python benchmarks/kv_cache.py --presets small --repeats 5 --json out.json --plot out.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
from common import add_common_arguments, decode_bars, make_prompt, median_rates, run_cached

from gptdeploy.model import GPT, GPTConfig
from gptdeploy.runtimes.torch_runtime import TorchRuntime


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
    runtime = TorchRuntime(model, tokenizer=None, max_slots=batch)
    prompt = make_prompt(model.config.vocab_size, batch, args.prompt_len)
    row = {"preset": preset, "batch": batch, "threads": threads}
    for mode, run in (("cache", lambda: run_cached(runtime, prompt, args.new_tokens)),
                      ("recompute", lambda: run_recompute(model, prompt, args.new_tokens))):  # fmt: skip
        row[f"{mode}_prefill_tok_s"], row[f"{mode}_decode_tok_s"] = median_rates(run, prompt, args)
    row["decode_speedup"] = row["cache_decode_tok_s"] / row["recompute_decode_tok_s"]
    row["prefill_ratio"] = row["cache_prefill_tok_s"] / row["recompute_prefill_tok_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
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
        decode_bars(rows, [("cache_decode_tok_s", "KV cache"), ("recompute_decode_tok_s", "full recompute")], args.plot)


if __name__ == "__main__":
    main()
