"""Fusion: the exported graph's decomposed attention and its neighbours as the fused operators a runtime is fast
with, as a graph -> graph stage on any existing bundle, held to fp32 parity. Two targets, because the two runtimes
want different graphs:

- `onnxruntime` -> `onnx-fused-ort`: the slot graph (`slot_graph.py`): GroupQueryAttention over a KV cache
  preallocated per slot and updated in place, packed QKV, rotary inside attention, Skip(Simplified)LayerNorm,
  FastGelu, logits for the last positions only. It is what the engine batches requests on (one decode call for
  every running request) and the form onnxruntime-genai's builder emits.
- `tensorrt` -> `onnx-fused-std`: the standard opset-23 `Attention` operator, which TensorRT's ONNX parser (10.14+)
  and ONNX Runtime both run, through onnxscript's SDPA rule (`fusion_rules.py`). The graph keeps the exported IO
  (past in, present out); the cache Concats stay outside the operator, as TensorRT's parser requires.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from gptdeploy.bundle import load_bundle
from gptdeploy.config import GPTConfig
from gptdeploy.errors import ExportError
from gptdeploy.export.pipeline import Stage, StageResult, add_stage
from gptdeploy.validation import checked_arguments

logger = logging.getLogger(__name__)

TARGETS = {"onnxruntime": "onnx-fused-ort", "tensorrt": "onnx-fused-std"}  # target -> the artifact it adds
ATTENTION_OPS = {  # a fused graph holds one of these, else nothing was fused
    "onnxruntime": ("com.microsoft::GroupQueryAttention",),
    "tensorrt": ("Attention",),
}


def fuse_standard_attention(source: str | Path, destination: str | Path) -> dict:
    """Read the graph at `source`, fuse its attention into opset-23 Attention, write it to `destination`; returns
    which rule families fired how often."""
    import onnx_ir as ir

    from gptdeploy.export.fusion_rules import fuse_standard, normalize_kv_concat

    started = time.perf_counter()
    model = ir.load(source)
    normalize_kv_concat(model)
    model, fusions = fuse_standard(model)
    destination = Path(destination)
    ir.save(model, destination, external_data=f"{destination.name}.data")
    logger.info("fused for tensorrt: %s", ", ".join(f"{rule} {count}" for rule, count in fusions.items()) or "none")
    return {"fusions": fusions, "fusion_seconds": round(time.perf_counter() - started, 1)}


def fusion_stage(target: str, config: GPTConfig) -> Stage:
    """The stage that adds `target`'s fused graph of a model with this config (fp32, held to fp32 parity)."""
    if target not in TARGETS:
        raise ExportError(f"unknown fusion target {target!r}; choose {', '.join(TARGETS)}")
    if target == "onnxruntime" and not config.causal:
        raise ExportError("the onnxruntime target builds a decoder's KV-cache slot graph; an encoder has no cache: "
                          "use --target tensorrt for its graph with fused standard Attention")  # fmt: skip
    if target == "onnxruntime":
        from gptdeploy.export.slot_graph import write_slot_graph

        def transform(source: Path, graph: Path) -> dict:
            return write_slot_graph(source, graph, config)

        recipe = {"target": target, "kv_cache": "shared buffer per slot (GroupQueryAttention)"}
    else:
        transform, recipe = fuse_standard_attention, {"target": target}
    return Stage(TARGETS[target], "onnx", "fp32", transform, recipe, marker_ops=ATTENTION_OPS[target])


@checked_arguments(ExportError)
def optimize_bundle(
    bundle: str | Path, target: str = "onnxruntime", source: str = "onnx-fp32", force: bool = False,
    tasks: bool | None = None,
) -> StageResult:  # fmt: skip
    """Add `target`'s fused graph made from `source` to the bundle, only if it keeps fp32 parity."""
    config = load_bundle(bundle, verify=False).config  # add_stage verifies the bundle
    return add_stage(bundle, fusion_stage(target, config), source, force, tasks)
