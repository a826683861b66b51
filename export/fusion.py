"""Fusion: rewrite the exported graph's decomposed attention and its neighbours into the fused operators runtimes
are fast with, as a graph -> graph stage that works on any existing bundle.

Two targets, because the two runtimes want different operators:
- `onnxruntime`: ONNX Runtime's contrib operators (com.microsoft MultiHeadAttention with past/present,
  SkipLayerNormalization or SkipSimplifiedLayerNormalization, RotaryEmbedding, FastGelu, FusedMatMul), through
  onnxscript's ORT fusion rules.
- `tensorrt`: the standard opset-23 `Attention` operator, which TensorRT's ONNX parser (10.14+) and ONNX Runtime
  both run; the graph is converted to opset 23 first. The cache Concats stay outside the operator: TensorRT's
  parser rejects Attention nodes with `past_key`/`past_value` inputs or more than one output.

Both start from the same canonical form: the exporter writes the KV-cache concatenation as `Concat(axis=2)`, the
fusion patterns expect the equivalent `axis=-2`, so the present outputs are normalized before matching. The ORT
patterns are written against the graphs Hugging Face models export to, and our exporter spells two more computations
in equivalent forms they do not match, so for that target these are rewritten first (same values):
- RMSNorm's `ReduceMean(axes=[2])` over the last axis -> `axes=[-1]` (then SimplifiedLayerNormalization and
  SkipSimplifiedLayerNormalization fuse);
- the rotary angles `position_ids[..., None] * inv_freq` -> transformers' `(inv_freq @ position_ids).T`, which the
  cos/sin cache rule turns into ORT's RotaryEmbedding with a cos/sin cache, which attention fusion then folds into
  MultiHeadAttention with the cache inside.

Grouped-query attention (n_kv_head < n_head) ends as MultiHeadAttention with the cache Concat and the head repeat
outside: MultiHeadAttention takes as many key/value heads as query heads, and ORT's GroupQueryAttention reads the
cache as right-padded with per-row lengths from `position_ids`, which the left-padded cache this graph's IO carries
is not.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from gptdeploy.errors import ExportError
from gptdeploy.export.pipeline import Stage, StageResult, add_stage

logger = logging.getLogger(__name__)

TARGETS = {"onnxruntime": "onnx-fused-ort", "tensorrt": "onnx-fused-std"}  # target -> the artifact it adds
ORT_ATTENTION = ("MultiHeadAttention", "GroupQueryAttention", "Attention")
ATTENTION_OPS = {  # a fused graph holds one of these, else nothing was fused
    "onnxruntime": tuple(f"com.microsoft::{op}" for op in ORT_ATTENTION),
    "tensorrt": ("Attention",),
}


def fuse_graph(source: str | Path, destination: str | Path, target: str) -> dict:
    """Read the graph at `source`, fuse it for `target`, write it (weights as external data) to `destination`;
    returns which rule families fired how often."""
    import onnx_ir as ir

    from gptdeploy.export.fusion_rules import fuse_for_onnxruntime, fuse_standard, normalize_kv_concat

    if target not in TARGETS:
        raise ExportError(f"unknown fusion target {target!r}; choose {', '.join(TARGETS)}")
    started = time.perf_counter()
    model = ir.load(source)
    normalize_kv_concat(model)
    model, fusions = fuse_for_onnxruntime(model) if target == "onnxruntime" else fuse_standard(model)
    destination = Path(destination)
    ir.save(model, destination, external_data=f"{destination.name}.data")
    logger.info("fused for %s: %s", target, ", ".join(f"{rule} {count}" for rule, count in fusions.items()) or "none")
    return {"fusions": fusions, "fusion_seconds": round(time.perf_counter() - started, 1)}


def fusion_stage(target: str) -> Stage:
    """The stage that adds `target`'s fused graph (fp32, held to fp32 parity)."""
    if target not in TARGETS:
        raise ExportError(f"unknown fusion target {target!r}; choose {', '.join(TARGETS)}")
    return Stage(TARGETS[target], "onnx", "fp32", lambda source, target_file: fuse_graph(source, target_file, target),
                 {"target": target}, marker_ops=ATTENTION_OPS[target])  # fmt: skip


def optimize_bundle(
    bundle: str | Path, target: str = "onnxruntime", source: str = "onnx-fp32", force: bool = False,
    tasks: bool | None = None,
) -> StageResult:  # fmt: skip
    """Add `target`'s fused graph made from `source` to the bundle, only if it keeps fp32 parity."""
    return add_stage(bundle, fusion_stage(target), source, force, tasks)
