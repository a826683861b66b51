"""One model on several backends side by side: parity with the reference, task accuracy, decode speed.

What the demo prints as its closing table; every number comes from running the backend, nothing is copied.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from gptdeploy.corpus.tasks import Example
from gptdeploy.evaluate import exact_match
from gptdeploy.generate import GenerationConfig, generate
from gptdeploy.golden import Golden
from gptdeploy.parity import check_parity
from gptdeploy.runtimes.base import Runtime, load_runtime

SPEED_PROMPT = "On Monday, Tom went to the market in"


def decode_speed(runtime: Runtime, new_tokens: int = 64, repeats: int = 3) -> float:
    """Median decode tokens/s of one greedy generation at batch 1 (tokens after the first, over decode time)."""
    config = GenerationConfig(max_new_tokens=new_tokens, ignore_eos=True)
    generate(runtime, SPEED_PROMPT, config)  # warm-up
    runs = [generate(runtime, SPEED_PROMPT, config) for _ in range(repeats)]
    return statistics.median((len(r.tokens) - 1) / r.decode_seconds for r in runs)


def compare_backends(
    models: Sequence[tuple[str, Path, str | None]], golden: Golden, heldout: Sequence[Example]
) -> list[dict]:
    """A row per (backend, model folder, bundle artifact or None): parity, greedy match, accuracy, decode tokens/s."""
    rows = []
    for backend, path, artifact in tqdm(models, desc="comparing", unit="model", disable=None):  # None: only on a tty
        with load_runtime(path, backend=backend, artifact=artifact) as runtime:
            parity = check_parity(runtime, golden)
            rows.append({
                "backend": backend,
                "artifact": artifact or "checkpoint",
                "precision": runtime.info.precision,
                "max_abs_logit_diff": parity.max_abs_logit_diff,
                "top1_agreement": parity.top1_agreement,
                "greedy_identical": f"{parity.greedy_identical}/{parity.prompts}",
                "parity_passed": bool(parity),
                "accuracy": exact_match(runtime, heldout).accuracy,
                "decode_tokens_per_s": decode_speed(runtime),
            })  # fmt: skip
    return rows


def describe_rows(rows: Sequence[dict], rejected: dict[str, str] | None = None) -> str:
    """The comparison table; `rejected` lists artifacts that were built but failed their accuracy budget."""
    lines = [f"{'backend':<12} {'artifact':<17} {'precision':<9} {'max|dlogit|':>11} {'top-1':>7} {'greedy':>7} "
             f"{'accuracy':>9} {'decode tok/s':>12}"]  # fmt: skip
    for r in rows:
        lines.append(
            f"{r['backend']:<12} {r['artifact']:<17} {r['precision']:<9} {r['max_abs_logit_diff']:>11.2e} "
            f"{r['top1_agreement']:>7.1%} {r['greedy_identical']:>7} {r['accuracy']:>9.1%} "
            f"{r['decode_tokens_per_s']:>12,.0f}"
        )
    lines += [f"{'onnxruntime':<12} {name:<17} rejected: {reason}" for name, reason in (rejected or {}).items()]
    return "\n".join(lines)
