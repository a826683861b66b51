"""Load on the HTTP server: `gptdeploy serve` with continuous batching, the same server one request at a time
(`--max-slots 1`), and llama-cpp-python's OpenAI server (`python -m llama_cpp.server`) on the same weights
converted with `gptdeploy export-gguf`.

A seeded random-weight checkpoint of `--shape` is built and deployed as a user would (`gptdeploy export`, then
`gptdeploy optimize --target onnxruntime`; the server runs the slot graph `onnx-fused-ort`; `--backend torch` serves
the checkpoint instead), or `--model` is served; every target is started as its
own process on a free port of 127.0.0.1, and bounded concurrent clients (`--clients`, e.g. 1 4 16 32) each send
`--requests-per-client` streaming completions one after another: prompt lengths drawn from 16-200 tokens, output
lengths from 16-128 tokens (the same seeded draws for every target). Reported per target and client count:
aggregate generated tokens/s over the run, time to first token (TTFT) and the gap between streamed chunks
(inter-token latency, ITL) at p50/p99, and the number of failed requests. `--soak MINUTES` instead runs the
gptdeploy target under `--clients` clients for that long, sampling the server's resident memory.

    python benchmarks/serve_load.py --json serve_load.json --plot serve_load.png           # gpt2-124m, f32
    python benchmarks/serve_load.py --backend torch                                         # the checkpoint on torch
    python benchmarks/serve_load.py --soak 10 --clients 8 --json soak.json --plot soak.png
    python benchmarks/serve_load.py --shape tiny --clients 1 4 --requests-per-client 2 --max-prompt-words 40 \
        --max-new-tokens 32                                                               # a smoke run (seconds)

llama-cpp-python's server needs its extras: pip install sse-starlette starlette-context pydantic-settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

TARGETS = ("gptdeploy", "gptdeploy-1slot", "llamacpp")
MODEL_NAME = "bench"


@dataclass
class Outcome:
    """One request as its client saw it."""

    sent: float
    chunks: list[float] = field(default_factory=list)  # arrival time of every chunk with text or a finish
    tokens: int = 0
    error: str | None = None


def build_checkpoint(shape: str, folder: Path) -> Path:
    """A seeded random-weight checkpoint of the preset `shape` with a small trained tokenizer."""
    import torch

    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.corpus.world import generate_corpus
    from gptdeploy.model import GPT, GPTConfig
    from gptdeploy.tokenizer import Tokenizer

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset(shape)).eval()
    tokenizer = Tokenizer.train(generate_corpus(target_bytes=200_000).documents, min(1024, model.config.vocab_size))
    with torch.no_grad():  # ids past the tokenizer decode to no text, so a server could stream nothing until the end
        model.lm_head.weight[tokenizer.vocab_size :] = 0  # logit 0: greedy picks a token with text (as real models do)
    save_checkpoint(folder / "checkpoint", model, tokenizer)
    return folder / "checkpoint"


def build_bundle(checkpoint: Path, folder: Path) -> Path:
    """The checkpoint exported and fused for ONNX Runtime through the CLI, the way a user deploys it."""
    bundle = folder / "bundle"
    for command in (["export", checkpoint, "-o", bundle], ["optimize", bundle, "--target", "onnxruntime"]):
        subprocess.run([sys.executable, "-m", "gptdeploy", *map(str, command)], check=True)
    return bundle


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Target:
    """A server process: started, waited for, measured, stopped."""

    def __init__(self, name: str, command: list[str], port: int, log: Path, threads: int):
        self.name, self.url = name, f"http://127.0.0.1:{port}"
        self.log = log.open("w")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torch's intra-op threads: the same budget for all
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                        env=env)  # fmt: skip

    def wait_ready(self, seconds: float = 300) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log.name}")
            try:
                probe = "/v1/models" if self.name == "llamacpp" else "/ready"  # ours lists its model while loading
                if httpx.get(f"{self.url}{probe}", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} was not ready within {seconds} s; see {self.log.name}")

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def start_target(name: str, model: Path, gguf: Path | None, args, work: Path) -> Target:
    port = free_port()
    if name == "llamacpp":  # --interrupt_requests False: its default cuts a stream short when the next one comes
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL_NAME,
                   "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(args.context),
                   "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
                   "--interrupt_requests", "False"]  # fmt: skip
    else:
        slots = "1" if name == "gptdeploy-1slot" else str(args.max_slots)
        command = [sys.executable, "-m", "gptdeploy", "serve", str(model), "--port", str(port), "--model-name",
                   MODEL_NAME, "--max-slots", slots, "--max-queue", "4096", *shlex.split(args.serve_args)]  # fmt: skip
    print(f"starting {name}: {' '.join(command)}", file=sys.stderr, flush=True)
    target = Target(name, command, port, (args.logs or work) / f"{name}.log", args.threads)
    target.wait_ready()
    return target


def workload(count: int, seed: int, vocab_words: list[str], args) -> list[tuple[str, int]]:
    """(prompt, max_tokens) pairs: prompts of 16 to --max-prompt-words words drawn from the tokenizer's vocabulary,
    16 to --max-new-tokens tokens out."""
    rng = np.random.default_rng(seed)
    return [(" ".join(rng.choice(vocab_words, rng.integers(16, args.max_prompt_words + 1))),
             int(rng.integers(16, args.max_new_tokens + 1))) for _ in range(count)]  # fmt: skip


async def one_request(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> Outcome:
    body = {"model": MODEL_NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    outcome = Outcome(time.perf_counter())
    chunks = 0
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                outcome.error = f"HTTP {response.status_code}: {(await response.aread())[:200]!r}"
                return outcome
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    outcome.tokens = chunk["usage"]["completion_tokens"]
                if chunk.get("choices"):
                    outcome.chunks.append(time.perf_counter())
                    chunks += 1
    except (httpx.HTTPError, json.JSONDecodeError) as error:
        outcome.error = type(error).__name__
    outcome.tokens = outcome.tokens or chunks  # a server without usage in streams sends one token per chunk
    return outcome


async def run_clients(url: str, jobs: list[tuple[str, int]], clients: int, until: float | None = None):
    """`clients` closed-loop clients sharing `jobs` (cycling through them until `until`, when given)."""
    outcomes: list[Outcome] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def worker(index: int) -> None:
            position = index
            while position < len(jobs) or (until is not None and time.perf_counter() < until):
                prompt, max_tokens = jobs[position % len(jobs)]
                outcomes.append(await one_request(client, url, prompt, max_tokens))
                position += clients
                if until is not None and time.perf_counter() >= until:
                    return

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(clients)))
    return outcomes, time.perf_counter() - started


def summarize(outcomes: list[Outcome], seconds: float) -> dict:
    good = [o for o in outcomes if o.error is None and o.chunks]
    ttft = [o.chunks[0] - o.sent for o in good]
    itl = [b - a for o in good for a, b in zip(o.chunks, o.chunks[1:], strict=False)]

    def p(values, q):
        return 1e3 * float(np.percentile(values, q)) if values else None

    errors = sorted({o.error for o in outcomes if o.error is not None})
    return {"requests": len(outcomes), "errors": len(outcomes) - len(good), "error_kinds": errors, "seconds": seconds,
            "tokens_per_s": sum(o.tokens for o in good) / seconds, "ttft_ms_p50": p(ttft, 50),
            "ttft_ms_p99": p(ttft, 99), "itl_ms_p50": p(itl, 50), "itl_ms_p99": p(itl, 99)}  # fmt: skip


def vocabulary_words(model: Path) -> list[str]:
    from gptdeploy.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(model)
    words = [tokenizer.decode([i]).strip() for i in range(tokenizer.vocab_size)]
    return [w for w in words if w.isalpha()] or ["word"]


def measure(args, model: Path, gguf: Path | None, work: Path) -> list[dict]:
    rows, words = [], vocabulary_words(model)
    for name in args.targets:
        try:
            target = start_target(name, model, gguf, args, work)
        except RuntimeError as error:  # a peer that cannot start (a missing extra) costs its rows, not the others'
            print(f"{name} not measured: {error}", flush=True)
            continue
        try:
            asyncio.run(run_clients(target.url, workload(2, 99, words, args), 1))  # warm-up
            for clients in args.clients:
                jobs = workload(clients * args.requests_per_client, clients, words, args)
                outcomes, seconds = asyncio.run(run_clients(target.url, jobs, clients))
                row = {"target": name, "clients": clients, **summarize(outcomes, seconds)}
                rows.append(row)
                print(f"{name:<16} {clients:>7} {row['tokens_per_s']:>9.1f} {row['ttft_ms_p50'] or 0:>9.0f} "
                      f"{row['ttft_ms_p99'] or 0:>8.0f} {row['itl_ms_p50'] or 0:>8.1f} {row['itl_ms_p99'] or 0:>8.1f} "
                      f"{row['errors']:>6}", flush=True)  # fmt: skip
        finally:
            target.stop()
    for clients in args.clients:
        chosen = {r["target"]: r["tokens_per_s"] for r in rows if r["clients"] == clients}
        for other in ("gptdeploy-1slot", "llamacpp"):
            if "gptdeploy" in chosen and chosen.get(other):
                print(f"{clients} clients: gptdeploy / {other} = {chosen['gptdeploy'] / chosen[other]:.2f}x")
    return rows


def soak(args, model: Path, work: Path) -> dict:
    """`args.clients[0]` clients for `args.soak` minutes on the gptdeploy target, its RSS sampled meanwhile."""
    target = start_target("gptdeploy", model, None, args, work)
    samples: list[tuple[float, int]] = []
    try:
        jobs = workload(256, 7, vocabulary_words(model), args)
        until = time.perf_counter() + 60 * args.soak

        async def sample() -> None:
            while time.perf_counter() < until:
                samples.append((time.perf_counter(), target.rss_bytes()))
                await asyncio.sleep(args.sample_seconds)

        async def both():
            sampler = asyncio.create_task(sample())
            result = await run_clients(target.url, jobs, args.clients[0], until)
            await sampler
            return result

        outcomes, seconds = asyncio.run(both())
    finally:
        target.stop()
    start = samples[0][0] if samples else 0.0
    rss = [(t - start, b / 2**20) for t, b in samples]
    third = max(1, len(rss) // 3)
    summary = {"clients": args.clients[0], "minutes": args.soak, **summarize(outcomes, seconds), "rss_mib": rss,
               "rss_first_third_mib": float(np.mean([m for _, m in rss[:third]])) if rss else None,
               "rss_last_third_mib": float(np.mean([m for _, m in rss[-third:]])) if rss else None}  # fmt: skip
    print(f"soak: {summary['requests']} requests, {summary['errors']} errors, {summary['tokens_per_s']:.1f} tokens/s; "
          f"RSS {summary['rss_first_third_mib']:.0f} MiB (first third) -> {summary['rss_last_third_mib']:.0f} MiB "
          "(last third)")  # fmt: skip
    return summary


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 4))
    for index, name in enumerate(dict.fromkeys(r["target"] for r in rows)):
        chosen = [r for r in rows if r["target"] == name]
        clients = [r["clients"] for r in chosen]
        for axis, key in zip(axes, ("tokens_per_s", "ttft_ms_p99", "itl_ms_p99"), strict=True):
            axis.plot(clients, [r[key] for r in chosen], f"C{index}o-", label=name)
    for axis, label in zip(axes, ("generated tokens/s (aggregate)", "TTFT p99 (ms)", "ITL p99 (ms)"), strict=True):
        axis.set(xlabel="concurrent clients", ylabel=label, xscale="log", yscale="log")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_soak(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot([t / 60 for t, _ in summary["rss_mib"]], [m for _, m in summary["rss_mib"]], "C0-")
    axis.set(xlabel="minutes", ylabel="server RSS (MiB)",
             title=f"{summary['clients']} clients, {summary['errors']} errors")  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="gpt2-124m", help="preset of the random-weight checkpoint to build")
    parser.add_argument(
        "--backend",
        choices=["onnxruntime", "torch"],
        default="onnxruntime",
        help="serve the built model's fused slot graph on ONNX Runtime, or its checkpoint on torch",
    )
    parser.add_argument("--model", type=Path, help="serve this checkpoint or bundle instead (llamacpp needs --gguf)")
    parser.add_argument("--gguf", type=Path, help="the GGUF file for llamacpp (default: export-gguf of the model)")
    parser.add_argument("--gguf-type", choices=["f32", "q8_0"], default="f32")
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16, 32])
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--max-prompt-words", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-slots", type=int, default=32)
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="compute threads of every server (llama.cpp's n_threads, OMP_NUM_THREADS for torch)",
    )
    parser.add_argument("--context", type=int, default=1024, help="llama.cpp context (n_ctx)")
    parser.add_argument("--serve-args", default="", help="more options for gptdeploy serve, e.g. '--backend ...'")
    parser.add_argument("--soak", type=float, help="minutes of load on the gptdeploy target (first --clients value)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling period of --soak")
    parser.add_argument("--logs", type=Path, help="keep each server's log in this folder")
    parser.add_argument("--json", help="also write the settings and results to this JSON file")
    parser.add_argument("--plot", help="also draw the results to this PNG")
    args = parser.parse_args()
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="serve_load.") as folder:
        work = Path(folder)
        checkpoint = args.model or build_checkpoint(args.shape, work)
        model = checkpoint
        if args.model is None and args.backend == "onnxruntime":
            model = build_bundle(checkpoint, work)
            args.serve_args = f"--artifact onnx-fused-ort {args.serve_args}"
        if args.soak:
            result = {"settings": {**vars(args), "model": str(model)}, "soak": soak(args, model, work)}
            if args.plot:
                plot_soak(result["soak"], args.plot)
        else:
            gguf = args.gguf
            if "llamacpp" in args.targets and gguf is None:
                from gptdeploy.gguf_export import export_gguf

                gguf = export_gguf(checkpoint, work / f"model-{args.gguf_type}.gguf", gguf_type=args.gguf_type).path
            print(f"{'target':<16} {'clients':>7} {'tokens/s':>9} {'TTFT p50':>9} {'p99 ms':>8} {'ITL p50':>8} "
                  f"{'p99 ms':>8} {'errors':>6}")  # fmt: skip
            rows = measure(args, model, gguf, work)
            result = {"settings": {**vars(args), "model": str(model), "gguf": str(gguf)}, "rows": rows}
            if args.plot:
                plot(rows, args.plot)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
