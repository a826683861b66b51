"""Every graph variant side by side on ONNX Runtime (CPU), against ORT fp32 and the torch runtime.

Each preset's seeded random-weight model is exported once; the fused and quantized graphs are made from that export
with the same transforms `gptdeploy optimize` / `gptdeploy quantize` use (without their accuracy guardrails, which
need trained weights: the accuracy of each variant on the trained demo model is in the demo's table). Every system
then runs the same random prompt at batch 1: prefill tokens/s, decode tokens/s after a short prompt, and decode
tokens/s at a long context (the prompt fills most of the window), one runtime at a time, after a warm-up, medians of
repeats, at each thread count. Prints the table with ratios against ORT fp32 and torch, and the size on disk.

    python benchmarks/variants.py                                  # small and gpt2-124m, 1 and 2 threads
    python benchmarks/variants.py --presets small --repeats 5 --json variants.json --plot variants.png
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

import onnxruntime as ort
import torch
from common import decode_bars, make_prompt, median_rates, run_cached

from gptdeploy.corpus.world import generate_corpus
from gptdeploy.export.calibration import CorpusCalibrationReader
from gptdeploy.export.fusion import fuse_standard_attention
from gptdeploy.export.onnx_export import export_onnx
from gptdeploy.export.quantize import calibration_texts
from gptdeploy.export.quantize_transforms import (
    convert_fp16,
    quantize_int4,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from gptdeploy.export.slot_graph import write_slot_graph
from gptdeploy.model import GPT, GPTConfig
from gptdeploy.runtimes.ort_runtime import open_graph, session_options
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from gptdeploy.tokenizer import Tokenizer

SHORT, LONG = "decode_tok_s", "long_decode_tok_s"


def build_variants(model: GPT, folder: Path, tokenizer: Tokenizer) -> dict[str, Path]:
    """Variant name -> graph file, each made from the one fp32 export of `model`."""
    fp32 = export_onnx(model, folder / "fp32" / "model.onnx").model_path
    graphs = {"ort fp32": fp32}

    def make(name: str, transform: Callable[[Path], object]) -> None:
        print(f"  building {name}", file=sys.stderr, flush=True)
        target = folder / name.replace(" ", "-") / "model.onnx"
        target.parent.mkdir()
        transform(target)
        graphs[name] = target

    make("ort slots", lambda target: write_slot_graph(fp32, target, model.config))
    make("ort fused-std", lambda target: fuse_standard_attention(fp32, target))
    make("ort int8", lambda target: quantize_int8_dynamic(fp32, target))
    make("ort int8 slots", lambda target: quantize_int8_dynamic(graphs["ort slots"], target))
    texts = calibration_texts(generate_corpus().documents, samples=16)
    reader = lambda: CorpusCalibrationReader(model.config, tokenizer, texts, max_tokens=128, progress=False)  # noqa: E731
    make("ort int8-static", lambda target: quantize_int8_static(fp32, target, reader=reader))
    make("ort fp16", lambda target: convert_fp16(fp32, target))
    make("ort int4", lambda target: quantize_int4(fp32, target))
    make("ort int4 slots", lambda target: quantize_int4(graphs["ort slots"], target))
    return graphs


def runtime_factories(model: GPT, graphs: dict[str, Path], threads: int) -> dict[str, tuple[Callable, Path | None]]:
    """Name -> (builder, graph file) for torch and every variant; each is built only when it is timed."""
    torch.set_num_threads(threads)
    options = session_options(threads, spinning=False)
    factories = {"torch": (lambda: TorchRuntime(model, tokenizer=None, max_slots=1), None)}
    for name, graph in graphs.items():
        make = lambda graph=graph: open_graph(graph, model.config, None, max_slots=1, options=options)  # noqa: E731
        factories[name] = (make, graph)
    return factories


def size_mb(graph: Path) -> float:
    return sum(path.stat().st_size for path in graph.parent.iterdir()) / 1e6


def measure(make: Callable[[], object], config: GPTConfig, args: argparse.Namespace) -> dict:
    """Prefill and decode rates after a short prompt, and decode at a long context, for one runtime."""
    runtime = make()
    short = make_prompt(config.vocab_size, 1, args.prompt_len)
    prefill, decode = median_rates(lambda: run_cached(runtime, short, args.new_tokens), short, args)
    long_len = min(args.long_context, config.block_size - args.new_tokens - 1)
    long = make_prompt(config.vocab_size, 1, long_len)
    long_args = argparse.Namespace(**{**vars(args), "prompt_len": long_len})
    _, long_decode = median_rates(lambda: run_cached(runtime, long, args.new_tokens), long, long_args)
    return {"prefill_tok_s": prefill, SHORT: decode, LONG: long_decode, "long_context": long_len}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "gpt2-124m"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--long-context", type=int, default=512, help="prompt length of the long-context decode")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the settings and rows to this JSON file")
    parser.add_argument("--plot", help="also draw decode tokens/s to this PNG")
    args = parser.parse_args()

    print("training a tokenizer on the shipped corpus (for int8-static calibration)...", file=sys.stderr, flush=True)
    tokenizer = Tokenizer.train(generate_corpus().text[:400_000], vocab_size=2048)
    rows = []
    print(f"{'preset':<10} {'thr':>3} {'system':<16} {'MB':>7} {'prefill/s':>10} {'decode/s':>9} {'x fp32':>7} "
          f"{'x torch':>7} {'long ctx':>8} {'decode/s':>9} {'x fp32':>7}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="variants.") as folder:
        for preset in args.presets:
            torch.manual_seed(0)
            model = GPT(GPTConfig.preset(preset)).eval()
            print(f"{preset}: exporting and building the variants...", file=sys.stderr, flush=True)
            graphs = build_variants(model, Path(folder) / preset, tokenizer)
            for threads in args.threads:
                results = {}
                for name, (make, graph) in runtime_factories(model, graphs, threads).items():
                    print(f"  measuring {preset} {name} threads {threads}", file=sys.stderr, flush=True)
                    results[name] = {
                        "preset": preset,
                        "threads": threads,
                        "system": name,
                        "size_mb": size_mb(graph) if graph else None,
                        **measure(make, model.config, args),
                    }
                for name, row in results.items():
                    row["decode_vs_ort_fp32"] = row[SHORT] / results["ort fp32"][SHORT]
                    row["decode_vs_torch"] = row[SHORT] / results["torch"][SHORT]
                    row["long_decode_vs_ort_fp32"] = row[LONG] / results["ort fp32"][LONG]
                    size = f"{row['size_mb']:>7.1f}" if row["size_mb"] else f"{'':>7}"
                    print(f"{preset:<10} {threads:>3} {name:<16} {size} {row['prefill_tok_s']:>10,.0f} "
                          f"{row[SHORT]:>9,.1f} {row['decode_vs_ort_fp32']:>6.2f}x {row['decode_vs_torch']:>6.2f}x "
                          f"{row['long_context']:>8} {row[LONG]:>9,.1f} {row['long_decode_vs_ort_fp32']:>6.2f}x",
                          flush=True)  # fmt: skip
                    rows.append(row)
    if args.json:
        settings = {**vars(args), "torch": torch.__version__, "onnxruntime": ort.__version__}
        with open(args.json, "w") as out:
            json.dump({"settings": settings, "rows": rows}, out, indent=2)
    if args.plot:
        plot_rows = [{**r, "batch": 1, "preset": f"{r['preset']} {r['system']}"} for r in rows]
        decode_bars(plot_rows, [(SHORT, "decode"), (LONG, "decode at long context")], args.plot)


if __name__ == "__main__":
    main()
