"""ONNX Runtime (fp32, CPU) against the torch runtime on the same model, prompt and greedy decode.

Each preset's random-weight model (seeded) is exported once to a temporary ONNX graph and rebuilt as the slot graph
ONNX Runtime serves from (`gptdeploy optimize --target onnxruntime`); both runtimes then run the same random prompt
through the Runtime protocol (each row prefilled into a slot, then one-token decode steps of all rows together),
one runtime at a time, at every batch size and thread count. Each measurement follows a warm-up run and is repeated;
the median is kept. Before timing, the two runtimes' prefill logits are compared so the race is over equal work.
Prints prefill and decode tokens/s of both runtimes and the ORT/torch ratios.

    python benchmarks/ort_vs_torch.py                       # small and gpt2-124m, batch 1 and 8, 1 and 2 threads
    python benchmarks/ort_vs_torch.py --presets small --repeats 5 --json out.json --plot out.png
"""

from __future__ import annotations

import os

# torch and ORT share this process: idle OpenMP workers must sleep rather than spin on the cores the other one times.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from common import add_common_arguments, decode_bars, make_prompt, median_rates, run_cached

from gptdeploy.export.onnx_export import export_onnx
from gptdeploy.export.slot_graph import write_slot_graph
from gptdeploy.model import GPT, GPTConfig
from gptdeploy.runtimes.base import Runtime
from gptdeploy.runtimes.ort_runtime import open_graph, session_options
from gptdeploy.runtimes.torch_runtime import TorchRuntime

LOGITS_ATOL = 1e-3  # fp32 graphs of the same weights agree far closer than this; more means different work


def runtime_factories(model: GPT, graph: Path, batch: int, threads: int) -> dict[str, Callable[[], Runtime]]:
    """Builders for both runtimes at `threads` (each built only when timed, so one holds memory at a time)."""
    torch.set_num_threads(threads)
    options = session_options(threads, spinning=False)
    return {
        "torch": lambda: TorchRuntime(model, tokenizer=None, max_slots=batch),
        "ort": lambda: open_graph(graph, model.config, tokenizer=None, max_slots=batch, options=options),
    }


def prefill_logits_diff(model: GPT, graph: Path, prompt: np.ndarray, threads: int) -> float:
    """Max abs difference between the two runtimes' logits over every prompt position."""
    logits = []
    for make in runtime_factories(model, graph, prompt.shape[0], threads).values():
        runtime = make()
        runtime.reset()
        logits.append(np.stack([runtime.prefill(slot, row, all_logits=True) for slot, row in enumerate(prompt)]))
    return float(np.abs(logits[0] - logits[1]).max())


def measure(model: GPT, graph: Path, preset: str, batch: int, threads: int, args: argparse.Namespace) -> dict:
    """One row: both runtimes on the same prompt at this batch size and thread count, torch first."""
    prompt = make_prompt(model.config.vocab_size, batch, args.prompt_len)
    row = {"preset": preset, "batch": batch, "threads": threads}
    for name, make in runtime_factories(model, graph, batch, threads).items():
        runtime = make()
        rates = median_rates(lambda runtime=runtime: run_cached(runtime, prompt, args.new_tokens), prompt, args)
        row[f"{name}_prefill_tok_s"], row[f"{name}_decode_tok_s"] = rates
    row["prefill_ratio"] = row["ort_prefill_tok_s"] / row["torch_prefill_tok_s"]
    row["decode_ratio"] = row["ort_decode_tok_s"] / row["torch_decode_tok_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    args = parser.parse_args()

    rows, logits_diff = [], {}
    header = f"{'preset':<10} {'B':>2} {'thr':>3} | {'prefill tok/s torch':>19} {'ort':>8} {'ort/torch':>9} | "
    header += f"{'decode tok/s torch':>18} {'ort':>8} {'ort/torch':>9}"
    print(header)
    with tempfile.TemporaryDirectory(prefix="ort_vs_torch.") as folder:
        for preset in args.presets:
            torch.manual_seed(0)
            model = GPT(GPTConfig.preset(preset)).eval()
            print(f"exporting {preset} to ONNX...", file=sys.stderr, flush=True)
            exported = export_onnx(model, Path(folder) / preset / "exported.onnx").model_path
            graph = Path(folder) / preset / "slots.onnx"
            write_slot_graph(exported, graph, model.config)
            prompt = make_prompt(model.config.vocab_size, max(args.batch_sizes), args.prompt_len)
            diff = logits_diff[preset] = prefill_logits_diff(model, graph, prompt, max(args.threads))
            print(f"{preset}: prefill logits max |ort - torch| = {diff:.1e} (batch {prompt.shape[0]})", flush=True)
            if diff > LOGITS_ATOL:
                sys.exit(f"{preset}: the runtimes disagree by more than {LOGITS_ATOL:g}; not benchmarking them")
            for batch in args.batch_sizes:
                for threads in args.threads:
                    print(f"measuring {preset} batch {batch} threads {threads}...", file=sys.stderr, flush=True)
                    r = measure(model, graph, preset, batch, threads, args)
                    rows.append(r)
                    print(f"{preset:<10} {batch:>2} {threads:>3} | {r['torch_prefill_tok_s']:>19,.0f} "
                          f"{r['ort_prefill_tok_s']:>8,.0f} {r['prefill_ratio']:>8.2f}x | "
                          f"{r['torch_decode_tok_s']:>18,.0f} {r['ort_decode_tok_s']:>8,.0f} "
                          f"{r['decode_ratio']:>8.2f}x", flush=True)  # fmt: skip
    if args.json:
        settings = {**vars(args), "torch": torch.__version__, "onnxruntime": ort.__version__}
        with open(args.json, "w") as out:
            json.dump({"settings": settings, "logits_max_abs_diff": logits_diff, "rows": rows}, out, indent=2)
    if args.plot:
        decode_bars(rows, [("torch_decode_tok_s", "torch"), ("ort_decode_tok_s", "ONNX Runtime fp32")], args.plot)


if __name__ == "__main__":
    main()
