"""What the benchmarks share: the timed decoding loop, medians over repeats, common options and the bar chart."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from gptdeploy.runtimes.base import Runtime


def run_cached(runtime: Runtime, prompt: np.ndarray, new_tokens: int) -> tuple[float, float]:
    """Seconds for prefilling each of the (B, T) prompt's rows into a slot and for `new_tokens` greedy decode steps
    of all of them together, through the runtime's cache."""
    slots = np.arange(prompt.shape[0])
    runtime.reset()
    started = time.perf_counter()
    logits = np.stack([runtime.prefill(slot, row) for slot, row in zip(slots, prompt, strict=True)])
    prefill = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        logits = runtime.decode(slots, logits.argmax(-1))
    return prefill, time.perf_counter() - started


def median_rates(
    run: Callable[[], tuple[float, float]], prompt: np.ndarray, args: argparse.Namespace
) -> tuple[float, float]:
    """Prefill and decode tokens/s: the medians of `args.repeats` runs after one warm-up run."""
    run()
    timings = [run() for _ in range(args.repeats)]
    batch = prompt.shape[0]
    prefill = statistics.median(t[0] for t in timings)
    decode = statistics.median(t[1] for t in timings)
    return batch * args.prompt_len / prefill, batch * args.new_tokens / decode


def make_prompt(vocab_size: int, batch: int, prompt_len: int) -> np.ndarray:
    """The seeded random prompt every compared system reads."""
    return np.random.default_rng(0).integers(0, vocab_size, (batch, prompt_len))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--presets", nargs="+", default=["small", "gpt2-124m"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the settings and rows to this JSON file")
    parser.add_argument("--plot", help="also draw decode tokens/s to this PNG")


def decode_bars(rows: list[dict], series: list[tuple[str, str]], path: str) -> None:
    """Grouped bars of decode tokens/s, one group per row, one bar per (row key, label) in `series`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['preset']}\nB={r['batch']} t={r['threads']}" for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    figure, axis = plt.subplots(figsize=(max(6, len(rows) * 1.2), 4))
    for index, (key, label) in enumerate(series):
        axis.bar(x + (index - (len(series) - 1) / 2) * width, [r[key] for r in rows], width, label=label)
    axis.set_xticks(x, labels, fontsize=8)
    axis.set_yscale("log")
    axis.set_ylabel("decode tokens/s (median)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
