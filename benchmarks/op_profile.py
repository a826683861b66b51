"""Where a decode step's time goes, op by op: ONNX Runtime's own profiler on our slot graph and on
onnxruntime-genai's builder graph of the same weights.

Both graphs come from a `benchmarks/peers.py --workdir DIR` folder (the bundle's `onnx-fused-ort` and quantized
variants, and `genai-fp32` / `genai-int4`). Each session runs with `SessionOptions.enable_profiling` on the same
prompt: one prefill, then `--steps` greedy decode steps over a KV buffer shared by past and present, driven with
IO binding the way each runtime drives it (ours with `seqlens_k`; genai's graph derives them from its attention
mask). The profile's node events are summed per op type over the decode steps; the table shows microseconds per
step for each op type on both graphs, and the session's own per-run time.

    python benchmarks/op_profile.py --workdir /tmp/peers                   # fp32: our slot graph vs genai's
    python benchmarks/op_profile.py --workdir /tmp/peers --ours unguarded-int4 --theirs genai-int4 --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from gptdeploy.bundle import load_bundle
from gptdeploy.graph_contract import past_names, present_names
from gptdeploy.runtimes.ort_runtime import open_graph


def genai_session_profile(folder: Path, prompt: np.ndarray, steps: int, threads: int, context: int) -> Path:
    """onnxruntime-genai's graph driven like its own generator: attention_mask grows, the cache buffer is shared."""
    config = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "genai")
    session = ort.InferenceSession(str(folder / config["filename"]), options, providers=["CPUExecutionProvider"])
    layers, heads, size = config["num_hidden_layers"], config["num_key_value_heads"], config["head_size"]
    buffers = [np.zeros((1, heads, context, size), np.float32) for _ in range(2 * layers)]
    inputs, outputs = config["inputs"], config["outputs"]
    names = [
        (inputs[f"past_{kind}_names"] % i, outputs[f"present_{kind}_names"] % i)
        for kind in ("key", "value")
        for i in range(layers)
    ]
    token, length = None, 0
    for step in range(steps + 1):
        ids = prompt[None] if step == 0 else np.array([[token]])
        length += ids.shape[1]
        binding = session.io_binding()
        binding.bind_cpu_input("input_ids", ids.astype(np.int64))
        binding.bind_cpu_input("attention_mask", np.ones((1, length), np.int64))
        for (past, present), buffer in zip(names, buffers, strict=True):
            value = ort.OrtValue.ortvalue_from_numpy(buffer)
            binding.bind_ortvalue_input(past, value)
            binding.bind_ortvalue_output(present, value)
        binding.bind_output("logits", "cpu")
        session.run_with_iobinding(binding)
        token = int(binding.get_outputs()[0].numpy()[0, -1].argmax())
    return Path(session.end_profiling())


def ours_profile(graph: Path, bundle_dir: Path, prompt: np.ndarray, steps: int, threads: int) -> Path:
    """Our slot graph through the runtime (so its binding is the one that ships)."""
    bundle = load_bundle(bundle_dir, verify=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ours")
    runtime = open_graph(graph, bundle.config, None, max_slots=1, options=options)
    assert past_names(bundle.config.n_layer) and present_names(bundle.config.n_layer)
    token = int(runtime.prefill(0, prompt).argmax())
    for _ in range(steps):
        token = int(runtime.decode([0], [token])[0].argmax())
    return Path(runtime.session.end_profiling())


def per_op(profile: Path, steps: int) -> tuple[dict[str, float], float]:
    """Microseconds per decode step for each op type, and per session run (the prefill run excluded)."""
    events = json.loads(profile.read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    decode_start = runs[1]["ts"] if len(runs) > 1 else 0
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time") and event["ts"] >= decode_start:
            totals[event["args"]["op_name"]] += event["dur"] / steps
    return dict(totals), sum(run["dur"] for run in runs[1:]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a benchmarks/peers.py --workdir folder")
    parser.add_argument("--ours", default="onnx-fused-ort", help="a bundle artifact, or unguarded-int8/unguarded-int4")
    parser.add_argument("--theirs", default="genai-fp32")
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    work = Path(args.workdir)
    prompt = np.load(work / "prompt.npy")
    bundle = load_bundle(work / "bundle", verify=False)
    ours = work / args.ours / "model.onnx" if args.ours.startswith("unguarded") else None
    ours = ours or bundle.file(bundle.artifact(name=args.ours).path)
    ours_ops, ours_run = per_op(ours_profile(ours, work / "bundle", prompt, args.steps, args.threads), args.steps)
    theirs_ops, theirs_run = per_op(genai_session_profile(work / args.theirs, prompt, args.steps, args.threads,
                                                          bundle.config.block_size), args.steps)  # fmt: skip
    print(f"decode step, {args.threads} thread(s), microseconds per step (sum over nodes of each op type)")
    print(f"{'op type':<36} {args.ours:>16} {args.theirs:>16}")
    for op in sorted(set(ours_ops) | set(theirs_ops), key=lambda o: -(ours_ops.get(o, 0) + theirs_ops.get(o, 0))):
        print(f"{op:<36} {ours_ops.get(op, 0):>16.1f} {theirs_ops.get(op, 0):>16.1f}")
    print(f"{'all nodes':<36} {sum(ours_ops.values()):>16.1f} {sum(theirs_ops.values()):>16.1f}")
    print(f"{'session run (model_run event)':<36} {ours_run:>16.1f} {theirs_run:>16.1f}")


if __name__ == "__main__":
    main()
