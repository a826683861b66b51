"""Every TensorRT check that needs a GPU, then a parity/speed table: `python tests/gpu/run_all.py`.

1. pytest: tests/gpu/ and the runtime contract suite on a TensorRT engine (`-k tensorrt`).
2. The `small` preset with random weights: an fp32 bundle, its fp16 and int8-static graphs, an engine for each, and
   per engine its parity against PyTorch fp32 on the same GPU and its generation speed at batch 1 and 8, next to
   the torch runtime on the same GPU.
Sized to finish in under 10 minutes on one GPU. Exits 1 if a test or a parity check failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["Mia lives in", "The market in Hillford opens on Monday and", "Q: What is 2 plus 3?\nA:", "Tom had"]


def run_tests() -> bool:
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "tests/gpu", "tests/runtimes/test_contract.py",
               "tests/runtimes/test_trt_runtime.py", "-k", "tensorrt or gpu or trt"]  # fmt: skip
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=ROOT).returncode == 0


def tokens_per_second(runtime, batch: int, new_tokens: int) -> float:
    from gptdeploy.generate import GenerationConfig, generate

    prompts = (PROMPTS * batch)[:batch]
    config = GenerationConfig(max_new_tokens=new_tokens, ignore_eos=True)
    generate(runtime, prompts, config)  # warm-up: kernels, allocations
    start = time.perf_counter()
    results = generate(runtime, prompts, config)
    return sum(len(r.tokens) for r in results) / (time.perf_counter() - start)


def measure(preset: str, new_tokens: int, workdir: Path) -> tuple[list[dict], bool]:
    import torch

    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.config import GPTConfig
    from gptdeploy.errors import ExportError
    from gptdeploy.export.pipeline import export_bundle
    from gptdeploy.export.quantize import quantize_bundle
    from gptdeploy.export.tensorrt_build import build_engine
    from gptdeploy.golden import compute_golden, load_golden
    from gptdeploy.model import GPT
    from gptdeploy.parity import check_parity
    from gptdeploy.runtimes.base import load_runtime
    from gptdeploy.runtimes.torch_runtime import TorchRuntime
    from gptdeploy.tokenizer import Tokenizer
    from tests.helpers import SAMPLE_TEXT

    torch.manual_seed(0)
    tokenizer = Tokenizer.train(SAMPLE_TEXT * 20, vocab_size=320)
    model = GPT(GPTConfig.preset(preset, vocab_size=tokenizer.vocab_size)).eval()
    save_checkpoint(workdir / "checkpoint", model, tokenizer)
    bundle = export_bundle(workdir / "checkpoint", workdir / "bundle", tasks=False).bundle
    rows, ok = [], True
    with TorchRuntime(model, tokenizer, device="cuda", max_slots=8) as reference:
        golden = compute_golden(reference, load_golden(bundle / "golden.npz").prompts)
        torch_speed = {b: tokens_per_second(reference, b, new_tokens) for b in (1, 8)}
    rows.append({"engine": "torch cuda fp32", "speed": torch_speed})
    sources = ["onnx-fp32"]
    for precision in ("fp16", "int8-static"):
        try:
            sources.append(quantize_bundle(bundle, precision, tasks=False).artifact.name)
        except ExportError as error:
            rows.append({"engine": f"onnx {precision}", "note": f"graph rejected: {error}"})
    for source in sources:
        start = time.perf_counter()
        artifact = build_engine(bundle, source=source, timing_cache=workdir / "timing.cache").artifact
        seconds = time.perf_counter() - start
        with load_runtime(bundle, "tensorrt", "cuda:0", artifact=artifact.name, max_slots=8) as runtime:
            parity = check_parity(runtime, golden)
            speed = {b: tokens_per_second(runtime, b, new_tokens) for b in (1, 8)}
        ok &= bool(parity)
        rows.append({"engine": artifact.name, "build_s": seconds, "mib": artifact.details.size_bytes / 2**20,
                     "parity": parity, "speed": speed})  # fmt: skip
    return rows, ok


def print_table(rows: list[dict], preset: str, new_tokens: int) -> None:
    import tensorrt

    from gptdeploy.runtimes.trt_runtime import cuda_device

    gpu = cuda_device("cuda:0")
    print(f"\n{preset} preset (random weights), TensorRT {tensorrt.__version__}, {gpu.name} (compute capability "
          f"{gpu.compute_capability}); speed = generated tokens/s, {new_tokens} new tokens")  # fmt: skip
    print(f"{'engine':<24} {'build s':>7} {'MiB':>6} {'max rel dlogit':>14} {'mean KL':>9} {'greedy':>7} "
          f"{'verdict':<8} {'tok/s b1':>9} {'tok/s b8':>9}")  # fmt: skip
    for row in rows:
        if "note" in row:
            print(f"{row['engine']:<24} {row['note']}")
            continue
        parity = row.get("parity")
        numbers = (f"{parity.max_rel_logit_diff:>14.2e} {parity.mean_kl:>9.2e} "
                   f"{parity.greedy_identical:>3}/{parity.prompts:<3} {'ok' if parity else 'FAIL':<8}"
                   if parity is not None else f"{'':>14} {'':>9} {'':>7} {'reference':<8}")  # fmt: skip
        build = f"{row['build_s']:>7.1f} {row['mib']:>6.1f}" if "build_s" in row else f"{'':>7} {'':>6}"
        print(f"{row['engine']:<24} {build} {numbers} {row['speed'][1]:>9.0f} {row['speed'][8]:>9.0f}")
        if parity is not None and not parity:
            print("    " + "; ".join(parity.failures))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="model shape to measure (random weights)")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--skip-tests", action="store_true", help="only the measurements")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    tests_ok = args.skip_tests or run_tests()
    with tempfile.TemporaryDirectory() as workdir:
        rows, parity_ok = measure(args.preset, args.new_tokens, Path(workdir))
    print_table(rows, args.preset, args.new_tokens)
    print(f"\ntests: {'passed' if tests_ok else 'FAILED'}; parity: {'passed' if parity_ok else 'FAILED'}")
    return 0 if tests_ok and parity_ok else 1


if __name__ == "__main__":
    sys.exit(main())
