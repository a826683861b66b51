"""Many users at once: the continuous-batching engine against static batching and one request at a time.

One seeded random-weight model per shape is exported and rebuilt as the slot graph (`gptdeploy optimize --target
onnxruntime`), and every mode serves the same requests from it through ONNX Runtime:
- `engine`: continuous batching over 16 slots (requests join between decode steps, prompts prefilled in chunks);
- `static`: today's batching before the engine: whatever is waiting when the runtime is idle starts together, and
  newcomers wait for the whole batch to finish;
- `one-at-a-time`: one slot, requests served in arrival order.

`--clients` closed-loop clients (1, 4, 8, 16) each send requests one after another, started 50 ms apart: prompt
lengths drawn from 16-200 tokens, 64 new tokens each (eos ignored). Reported per mode: aggregate generated tokens/s
over the run, time to first token (TTFT) p50/p99 and inter-token latency (ITL) p50/p99, from timestamps the engine's
listener records. A separate probe measures what the issue asks of TTFT: a 16-token request arriving while a
200-token prompt is being prefilled (at several offsets), against the same request on an idle engine.

    python benchmarks/concurrency.py                               # small and gpt2-124m, 1/4/8/16 clients, 2 threads
    python benchmarks/concurrency.py --shapes small --clients 1 8 --json concurrency.json --plot concurrency.png
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from gptdeploy.engine import Engine, EngineLoop, GenerationConfig, Request
from gptdeploy.export.onnx_export import export_onnx
from gptdeploy.export.slot_graph import write_slot_graph
from gptdeploy.model import GPT, GPTConfig
from gptdeploy.runtimes.ort_runtime import open_graph, session_options
from gptdeploy.tokenizer import Tokenizer

MODES = ("engine", "static", "one-at-a-time")
SLOTS = {"engine": 16, "static": 16, "one-at-a-time": 1}
NEW_TOKENS = 64


class StaticEngine(Engine):
    """Batching as it was before the engine: admits waiting requests only when nothing is running."""

    def _admit(self) -> None:
        if not self.active:
            super()._admit()


class Timeline:
    """When each request was sent, and when each of its tokens arrived (the engine's listener calls this)."""

    def __init__(self):
        self.sent: dict[Request, float] = {}
        self.tokens: dict[Request, list[float]] = {}

    def heard(self, request: Request) -> None:
        now, times = time.perf_counter(), self.tokens.setdefault(request, [])
        times.extend([now] * (len(request.generated) - len(times)))


def build(shape: str, folder: Path) -> tuple[GPTConfig, Path, Tokenizer]:
    from gptdeploy.corpus.world import generate_corpus

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset(shape)).eval()
    tokenizer = Tokenizer.train(generate_corpus(target_bytes=200_000).documents, min(1024, model.config.vocab_size))
    print(f"exporting {shape} and building its slot graph...", file=sys.stderr, flush=True)
    exported = export_onnx(model, folder / shape / "exported.onnx").model_path
    write_slot_graph(exported, folder / shape / "slots.onnx", model.config)
    return model.config, folder / shape / "slots.onnx", tokenizer


def prompts(tokenizer: Tokenizer, count: int, seed: int, lengths=(16, 200)) -> list[str]:
    """Texts of random token ids (decoded) whose lengths are drawn from `lengths`."""
    rng = np.random.default_rng(seed)
    ids = [rng.integers(300, tokenizer.vocab_size, rng.integers(*lengths)) for _ in range(count)]
    return [tokenizer.decode(row.tolist()) for row in ids]


def serve(loop: EngineLoop, texts: list[str], clients: int, timeline: Timeline) -> float:
    """Closed-loop clients sending `texts` between them; returns the wall time until the last answer."""
    config = GenerationConfig(max_new_tokens=NEW_TOKENS, ignore_eos=True)
    shares = [texts[i::clients] for i in range(clients)]

    def client(index: int) -> None:
        time.sleep(0.05 * index)
        for text in shares[index]:
            timeline_sent = time.perf_counter()
            request = loop.submit(text, config, listener=timeline.heard)
            timeline.sent[request] = timeline_sent
            request.finished.wait()

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def percentiles(values: list[float]) -> tuple[float, float]:
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def measure(mode: str, graph: Path, config: GPTConfig, tokenizer: Tokenizer, clients: int, args) -> dict:
    runtime = open_graph(graph, config, tokenizer, max_slots=SLOTS[mode], options=session_options(args.threads))
    engine_class = StaticEngine if mode == "static" else Engine
    loop = EngineLoop(engine_class(runtime, prefill_chunk=args.prefill_chunk))
    serve(loop, prompts(tokenizer, 2, seed=99), 1, Timeline())  # warm-up
    timeline = Timeline()
    seconds = serve(loop, prompts(tokenizer, args.requests_per_client * clients, seed=clients), clients, timeline)
    loop.close()
    ttft = [times[0] - timeline.sent[r] for r, times in timeline.tokens.items()]
    itl = [b - a for times in timeline.tokens.values() for a, b in itertools.pairwise(times)]
    generated = sum(len(times) for times in timeline.tokens.values())
    return {"mode": mode, "clients": clients, "tokens_per_s": generated / seconds, "ttft_ms": percentiles(ttft),
            "itl_ms": percentiles(itl), "requests": len(timeline.tokens)}  # fmt: skip


def ttft_behind_long_prompt(graph: Path, config: GPTConfig, tokenizer: Tokenizer, args) -> dict:
    """A 16-token request's TTFT when it arrives while a 200-token prompt is prefilled, against the same request
    on an idle engine (each the median over `args.probe_runs` runs, p99 over the arrival offsets)."""
    runtime = open_graph(graph, config, tokenizer, max_slots=SLOTS["engine"], options=session_options(args.threads))
    loop = EngineLoop(Engine(runtime, prefill_chunk=args.prefill_chunk))
    short = prompts(tokenizer, 1, seed=7, lengths=(16, 17))[0]
    long = prompts(tokenizer, 1, seed=8, lengths=(200, 201))[0]
    config_short = GenerationConfig(max_new_tokens=1)

    def time_to_first_token(text: str) -> float:
        sent = time.perf_counter()
        request = loop.submit(text, config_short)
        request.finished.wait()
        return request.first_token_at - sent

    time_to_first_token(short)
    unloaded = statistics.median(time_to_first_token(short) for _ in range(args.probe_runs))
    loaded = []
    for offset in np.linspace(0.0, 0.15, args.probe_runs):
        background = loop.submit(long, GenerationConfig(max_new_tokens=8, ignore_eos=True))
        time.sleep(offset)
        loaded.append(time_to_first_token(short))
        background.finished.wait()
    loop.close()
    return {"unloaded_ms": 1e3 * unloaded, "behind_long_p50_ms": 1e3 * float(np.percentile(loaded, 50)),
            "behind_long_p99_ms": 1e3 * float(np.percentile(loaded, 99)),
            "p99_over_unloaded": float(np.percentile(loaded, 99)) / unloaded}  # fmt: skip


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for shape in dict.fromkeys(r["shape"] for r in rows):
        for index, mode in enumerate(MODES):
            chosen = [r for r in rows if r["shape"] == shape and r["mode"] == mode]
            style = f"C{index}" + ("o-" if shape == rows[0]["shape"] else "s--")
            clients, label = [r["clients"] for r in chosen], f"{shape} {mode}"
            left.plot(clients, [r["tokens_per_s"] for r in chosen], style, label=label)
            right.plot(clients, [1e3 * r["ttft_ms"][1] for r in chosen], style, label=label)
    left.set(xlabel="concurrent clients", ylabel="generated tokens/s (aggregate)", yscale="log")
    right.set(xlabel="concurrent clients", ylabel="time to first token p99 (ms)", yscale="log")
    left.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["small", "gpt2-124m"])
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--prefill-chunk", type=int, default=64)
    parser.add_argument("--probe-runs", type=int, default=9)
    parser.add_argument("--json", help="also write the settings and rows to this JSON file")
    parser.add_argument("--plot", help="also draw throughput and TTFT against clients to this PNG")
    args = parser.parse_args()
    rows, probes = [], {}
    print(f"{'shape':<10} {'mode':<14} {'clients':>7} {'tok/s':>8} {'TTFT p50':>9} {'p99 ms':>8} {'ITL p50':>8} "
          f"{'p99 ms':>8}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="concurrency.") as folder:
        for shape in args.shapes:
            config, graph, tokenizer = build(shape, Path(folder))
            for clients in args.clients:
                for mode in args.modes:
                    print(f"measuring {shape} {mode} with {clients} clients...", file=sys.stderr, flush=True)
                    row = {"shape": shape, **measure(mode, graph, config, tokenizer, clients, args)}
                    rows.append(row)
                    print(f"{shape:<10} {mode:<14} {clients:>7} {row['tokens_per_s']:>8.1f} "
                          f"{1e3 * row['ttft_ms'][0]:>9.0f} {1e3 * row['ttft_ms'][1]:>8.0f} "
                          f"{1e3 * row['itl_ms'][0]:>8.1f} {1e3 * row['itl_ms'][1]:>8.1f}", flush=True)  # fmt: skip
            probes[shape] = ttft_behind_long_prompt(graph, config, tokenizer, args)
            p = probes[shape]
            print(f"{shape}: a 16-token request's TTFT behind a 200-token prompt: p50 "
                  f"{p['behind_long_p50_ms']:.0f} ms, p99 {p['behind_long_p99_ms']:.0f} ms; unloaded "
                  f"{p['unloaded_ms']:.0f} ms (p99 = {p['p99_over_unloaded']:.2f}x)", flush=True)  # fmt: skip
            for clients in args.clients:
                chosen = {r["mode"]: r for r in rows if r["shape"] == shape and r["clients"] == clients}
                if "engine" in chosen and "one-at-a-time" in chosen:
                    ratio = chosen["engine"]["tokens_per_s"] / chosen["one-at-a-time"]["tokens_per_s"]
                    print(f"{shape}: {clients} clients, engine / one-at-a-time = {ratio:.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": vars(args), "rows": rows, "ttft_probe": probes}, indent=2))
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
