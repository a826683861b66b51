"""Does GroupQueryAttention over a shared, preallocated KV buffer make batch-1 decode faster on this CPU?

Each preset's seeded random-weight model is exported and fused for ONNX Runtime (com.microsoft MultiHeadAttention
with past/present: every step concatenates the whole past into a freshly allocated present). `gqa_graph` rewrites
that graph's attention into GroupQueryAttention whose past and present are one buffer of the model's maximum length,
bound as the same OrtValue for input and output, so a step writes only the new token's keys and values.

Four systems decode the same random prompt greedily:
- `runtime mha`: the fused graph through OrtRuntime, what ships (the attention mask grows each step, as in generate);
- `loop mha`: the fused graph through the leanest IO-binding loop this script can write;
- `gqa copy`: the GroupQueryAttention graph through that loop with a growing cache (ORT copies the past each step);
- `gqa shared`: the same graph and loop over the shared buffers, allocated once.
Ratios: `shared/mha` is what the rewrite buys at the operator level; `shared/copy` is the shared buffer's own part
(the rest is the GQA kernel and the mask subgraph that goes away); `shared/rt` is against what ships; `mha/rt` is
our runtime's per-step overhead.

Per preset, thread count and context, each system prefills the prompt once (timed once: the prefill columns are one
run, not a median). Then all of them decode 32 steps fed the runtime's greedy tokens: every logit of the loops, of
the whole prefill and of each step, must match the runtime's within 1e-4, or the script exits 1 (this also warms
them up). Then `--repeats` rounds restore every system to its post-prefill state and time `--new-tokens` greedy
decode steps, one system at a time, the order rotated each round so background load hits all of them alike. The
table shows the median of the runs' tokens/s; the JSON also has 1 / the median single step, which sporadic
preemption disturbs less.

    python benchmarks/gqa_shared_buffer.py                       # small and gpt2-124m, 1 and 2 threads
    python benchmarks/gqa_shared_buffer.py --quick               # smoke run: small, 1 thread, 1 repeat
    python benchmarks/gqa_shared_buffer.py --repeats 5 --json gqa.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
import torch
from common import make_prompt
from gqa_graph import SEQLENS_K, TOTAL_SEQUENCE_LENGTH, to_shared_buffer_gqa

from gptdeploy.config import GPTConfig
from gptdeploy.export.fusion import fuse_graph
from gptdeploy.export.onnx_export import export_onnx
from gptdeploy.fileio import atomic_write_json
from gptdeploy.graph_contract import ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS, past_names, present_names
from gptdeploy.model import GPT
from gptdeploy.runtimes.ort_runtime import OrtRuntime, session_options

TOLERANCE = 1e-4
CHECK_STEPS = 32
SYSTEMS = ("runtime mha", "loop mha", "gqa copy", "gqa shared")


class System(Protocol):
    def prefill(self, prompt: np.ndarray) -> np.ndarray:
        """Start over with the (1, S) prompt; float32 logits (S, vocab)."""

    def step(self, token: int) -> np.ndarray:
        """Append one token; float32 logits (vocab,)."""

    def snapshot(self) -> object:
        """The cache state, to return to with `restore` (only valid until the next prefill)."""

    def restore(self, state: object) -> None: ...


def ortvalue(array: np.ndarray) -> ort.OrtValue:
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))


class ShippedRuntime:
    """OrtRuntime as generate() drives it; snapshots hold its own cache values (ORT never writes into them)."""

    def __init__(self, graph: Path, config: GPTConfig, options: ort.SessionOptions):
        self.runtime = OrtRuntime(graph, config, None, max_batch_size=1, options=options)
        self.mask = np.ones((1, 0), np.int64)

    def prefill(self, prompt: np.ndarray) -> np.ndarray:
        self.runtime.reset(1)
        self.mask = np.ones_like(prompt)
        return self.runtime.forward(prompt, self.mask, all_logits=True)[0]

    def step(self, token: int) -> np.ndarray:
        self.mask = np.concatenate([self.mask, np.ones((1, 1), np.int64)], axis=1)
        return self.runtime.forward(np.array([[token]]), self.mask)[0]

    def snapshot(self) -> object:
        return list(self.runtime.past), self.runtime.length, self.mask

    def restore(self, state: object) -> None:
        past, self.runtime.length, self.mask = state
        self.runtime.past = list(past)


class DecodeLoop:
    """The leanest batch-1 loop over one graph. Decode inputs and the logits output are OrtValues made once and
    refilled in place. The cache either grows (the last step's present is bound as the past, ORT allocates the next
    present) or, `shared`, is one (1, H_kv, block_size, Dh) buffer per cache bound as both past and present: a step
    writes row `length`, so going back to a shorter length is just forgetting the rows after it."""

    def __init__(self, graph: Path, config: GPTConfig, options: ort.SessionOptions, shared: bool = False):
        self.session = ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])
        self.config, self.shared = config, shared
        self.gqa = SEQLENS_K in {value.name for value in self.session.get_inputs()}
        self.caches = list(zip(past_names(config.n_layer), present_names(config.n_layer), strict=True))
        self.mask = np.ones((1, config.block_size), np.int64)
        self.token, self.position = ortvalue(np.zeros((1, 1), np.int64)), ortvalue(np.zeros((1, 1), np.int64))
        self.seqlens, self.total = ortvalue(np.zeros(1, np.int32)), ortvalue(np.zeros((), np.int32))
        self.logits = ort.OrtValue.ortvalue_from_shape_and_type((1, 1, config.vocab_size), np.float32)
        shape = (1, config.kv_heads, config.block_size, config.head_dim)
        self.buffers = [ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32) for _ in self.caches]
        self.past: list[ort.OrtValue] = self.buffers if shared else []
        self.binding = self.session.io_binding()
        if shared:
            self._bind_caches(self.binding)
        self.length = 0

    def _bind_caches(self, binding: ort.IOBinding) -> None:
        for (past_name, present_name), value in zip(self.caches, self.past, strict=True):
            binding.bind_ortvalue_input(past_name, value)
            if self.shared:
                binding.bind_ortvalue_output(present_name, value)
            else:
                binding.bind_output(present_name, "cpu")

    def _run(self, binding: ort.IOBinding, ids: ort.OrtValue, positions: ort.OrtValue, total: int) -> list:
        """Bind what changes, run, keep the new present; `total` is the cached length after this call."""
        binding.bind_ortvalue_input(INPUT_IDS, ids)
        binding.bind_ortvalue_input(POSITION_IDS, positions)
        if self.gqa:
            self.seqlens.update_inplace(np.array([total - 1], np.int32))
            self.total.update_inplace(np.array(total, np.int32))
            binding.bind_ortvalue_input(SEQLENS_K, self.seqlens)
            binding.bind_ortvalue_input(TOTAL_SEQUENCE_LENGTH, self.total)
        else:
            binding.bind_cpu_input(ATTENTION_MASK, self.mask[:, :total])
        if not self.shared or binding is not self.binding:
            self._bind_caches(binding)
        self.session.run_with_iobinding(binding)
        outputs = binding.get_outputs()
        if not self.shared:
            self.past = list(outputs[1:])
        self.length = total
        return outputs

    def prefill(self, prompt: np.ndarray) -> np.ndarray:
        length = prompt.shape[1]
        if not self.shared:
            empty = np.zeros((1, self.config.kv_heads, 0, self.config.head_dim), np.float32)
            self.past = [ortvalue(empty) for _ in self.caches]
        binding = self.session.io_binding()
        binding.bind_output(LOGITS, "cpu")
        ids, positions = ortvalue(prompt.astype(np.int64)), ortvalue(np.arange(length, dtype=np.int64)[None])
        return self._run(binding, ids, positions, length)[0].numpy()[0]

    def step(self, token: int) -> np.ndarray:
        self.token.update_inplace(np.array([[token]], np.int64))
        self.position.update_inplace(np.array([[self.length]], np.int64))
        self.binding.bind_ortvalue_output(LOGITS, self.logits)
        self._run(self.binding, self.token, self.position, self.length + 1)
        return self.logits.numpy()[0, 0]

    def snapshot(self) -> object:
        return list(self.past), self.length

    def restore(self, state: object) -> None:
        past, self.length = state
        self.past = list(past)


def prefill_and_check(systems: dict[str, System], prompt: np.ndarray) -> tuple[dict, dict, int]:
    """Prefill every system (seconds each, one run), then step all of them `CHECK_STEPS` times on the runtime's
    greedy tokens; returns the prefill seconds, each loop's max abs logit difference from the runtime, and the
    runtime's first generated token."""
    logits, seconds = {}, {}
    for name, system in systems.items():
        started = time.perf_counter()
        logits[name] = system.prefill(prompt).copy()
        seconds[name] = time.perf_counter() - started
    reference = logits.pop("runtime mha")
    diffs = {name: float(np.abs(reference - values).max()) for name, values in logits.items()}
    first = token = int(reference[-1].argmax())
    states = {name: system.snapshot() for name, system in systems.items()}
    for _ in range(CHECK_STEPS):
        expected = systems["runtime mha"].step(token)
        for name in diffs:
            diffs[name] = max(diffs[name], float(np.abs(expected - systems[name].step(token)).max()))
        token = int(expected.argmax())
    for name, system in systems.items():
        system.restore(states[name])
    return seconds, diffs, first


def time_decode(system: System, first_token: int, new_tokens: int) -> list[float]:
    """Seconds of each of `new_tokens` greedy steps from the system's current state."""
    token, steps = first_token, []
    for _ in range(new_tokens):
        started = time.perf_counter()
        token = int(system.step(token).argmax())
        steps.append(time.perf_counter() - started)
    return steps


def decode_rates(systems: dict[str, System], first_token: int, args: argparse.Namespace) -> dict[str, dict]:
    """Decode tokens/s per system over `repeats` runs from the post-prefill state, in rotating order: the median
    run's rate, and one over the median step."""
    states = {name: system.snapshot() for name, system in systems.items()}
    runs: dict[str, list[list[float]]] = {name: [] for name in systems}
    names = list(systems)
    for round_index in range(args.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            systems[name].restore(states[name])
            runs[name].append(time_decode(systems[name], first_token, args.new_tokens))
    return {
        name: {
            "decode_tok_s": args.new_tokens / statistics.median(sum(steps) for steps in timings),
            "decode_tok_s_median_step": 1 / statistics.median(step for steps in timings for step in steps),
        }
        for name, timings in runs.items()
    }


def build_graphs(preset: str, folder: Path) -> tuple[GPTConfig, Path, Path]:
    """The seeded random model's fused ORT graph and its shared-buffer GQA rewrite."""
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset(preset)).eval()
    for name in ("fp32", "fused", "gqa"):
        (folder / name).mkdir(parents=True)
    fp32 = export_onnx(model, folder / "fp32" / "model.onnx").model_path
    fused, gqa = folder / "fused" / "model.onnx", folder / "gqa" / "model.onnx"
    fusions = fuse_graph(fp32, fused, "onnxruntime")["fusions"]
    rewritten = to_shared_buffer_gqa(fused, gqa)
    print(f"{preset}: fused {fusions}; {rewritten} MultiHeadAttention -> GroupQueryAttention", file=sys.stderr)
    return model.config, fused, gqa


def contexts_for(config: GPTConfig, args: argparse.Namespace) -> list[int]:
    """Prompt lengths that fit the window with the decoded tokens; a long one that does not is cut to fit."""
    fit = config.block_size - max(args.new_tokens, CHECK_STEPS) - 1
    return sorted({min(length, fit) for length in args.contexts})


def measure(config: GPTConfig, fused: Path, gqa: Path, threads: int, args: argparse.Namespace) -> list[dict]:
    options = session_options(threads, spinning=False)
    systems: dict[str, System] = {
        "runtime mha": ShippedRuntime(fused, config, options),
        "loop mha": DecodeLoop(fused, config, options),
        "gqa copy": DecodeLoop(gqa, config, options),
        "gqa shared": DecodeLoop(gqa, config, options, shared=True),
    }
    rows = []
    for context in contexts_for(config, args):
        prompt = make_prompt(config.vocab_size, 1, context)
        prefill, diffs, first_token = prefill_and_check(systems, prompt)
        decode = decode_rates(systems, first_token, args)
        row = {"threads": threads, "context": context, "max_abs_diff": diffs}
        for name in systems:
            row[name] = {"prefill_tok_s_one_run": context / prefill[name], **decode[name]}
        rows.append(row)
    return rows


RATIOS = (("shared/mha", "gqa shared", "loop mha"), ("shared/copy", "gqa shared", "gqa copy"),
          ("shared/rt", "gqa shared", "runtime mha"), ("mha/rt", "loop mha", "runtime mha"))  # fmt: skip
PREFILLS = ("loop mha", "gqa shared")


def print_header() -> None:
    print(f"{'':<21}| {'decode tokens/s (median run)':^47} | {'ratios of decode tokens/s':^47} | prefill tok/s")
    names = " ".join(f"{name:>11}" for name in SYSTEMS)
    ratios = " ".join(f"{label:>11}" for label, _, _ in RATIOS)
    print(f"{'preset':<10} {'thr':>3} {'ctx':>5} | {names} | {ratios} | " + " ".join(f"{n:>10}" for n in PREFILLS))


def print_row(preset: str, row: dict) -> None:
    decode = {name: row[name]["decode_tok_s"] for name in SYSTEMS}
    rates = " ".join(f"{decode[name]:>11.1f}" for name in SYSTEMS)
    ratios = " ".join(f"{decode[top] / decode[bottom]:>10.2f}x" for _, top, bottom in RATIOS)
    prefills = " ".join(f"{row[name]['prefill_tok_s_one_run']:>10.0f}" for name in PREFILLS)
    print(f"{preset:<10} {row['threads']:>3} {row['context']:>5} | {rates} | {ratios} | {prefills}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["small", "gpt2-124m"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument(
        "--contexts",
        nargs="+",
        type=int,
        default=[32, 512, 900],
        help="prompt lengths; those past a preset's window are cut to fit it",
    )
    parser.add_argument("--new-tokens", type=int, default=32, help="decode steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: small only, 1 thread, 1 repeat")
    parser.add_argument("--json", help="also write the settings, logit checks and rows to this JSON file")
    args = parser.parse_args()
    if args.quick:
        args.presets, args.threads, args.repeats = ["small"], [1], 1

    print_header()
    results, failures = [], []
    with tempfile.TemporaryDirectory(prefix="gqa-shared-buffer.") as folder:
        for preset in args.presets:
            print(f"{preset}: exporting, fusing and rewriting...", file=sys.stderr, flush=True)
            config, fused, gqa = build_graphs(preset, Path(folder) / preset)
            for threads in args.threads:
                print(f"  measuring {preset} at {threads} thread(s)", file=sys.stderr, flush=True)
                for row in measure(config, fused, gqa, threads, args):
                    diffs = row["max_abs_diff"]
                    print(
                        "  logits vs runtime mha, max abs diff: "
                        + ", ".join(f"{name} {diff:.1e}" for name, diff in diffs.items()),
                        file=sys.stderr,
                    )
                    failures += [
                        f"{preset} threads {threads} context {row['context']}: {name} differs by {diff:.2e}"
                        for name, diff in diffs.items()
                        if not diff <= TOLERANCE
                    ]
                    print_row(preset, row)
                    results.append({"preset": preset, **row})
    if args.json:
        settings = {**vars(args), "onnxruntime": ort.__version__, "tolerance": TOLERANCE, "check_steps": CHECK_STEPS}
        atomic_write_json(args.json, {"settings": settings, "rows": results, "failures": failures})
    if failures:
        print("Error: the GQA graph's logits do not match the fused graph's: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
