"""Fusion: rewrite the exported graph's decomposed attention and its neighbours into the fused operators runtimes
are fast with, as a graph -> graph stage that works on any existing bundle.

Two targets, because the two runtimes want different operators:
- `onnxruntime`: ONNX Runtime's contrib operators (com.microsoft MultiHeadAttention with past/present,
  SkipLayerNormalization, FastGelu, FusedMatMul), through onnxscript's ORT fusion rules.
- `tensorrt`: the standard opset-23 `Attention` operator, which TensorRT's ONNX parser (10.14+) and ONNX Runtime
  both run; the graph is converted to opset 23 first. The cache Concats stay outside the operator: TensorRT's
  parser rejects Attention nodes with `past_key`/`past_value` inputs or more than one output.

Both start from the same canonical form: the exporter writes the KV-cache concatenation as `Concat(axis=2)`, the
fusion patterns expect the equivalent `axis=-2`, so the present outputs are normalized before matching.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir
from onnxscript.rewriter import pattern

from gptdeploy.bundle import Artifact, add_artifact, folder_files, load_bundle, staged_folder
from gptdeploy.errors import ExportError

logger = logging.getLogger(__name__)

STANDARD_OPSET = 23
TARGETS = {  # target -> (artifact name, folder in the bundle)
    "onnxruntime": ("onnx-fused-ort", "decoder-fused-ort"),
    "tensorrt": ("onnx-fused-std", "decoder-fused-std"),
}
ATTENTION_OPS = {"MultiHeadAttention", "GroupQueryAttention", "Attention"}
GRAPH_FILE = "model.onnx"


@dataclass(frozen=True)
class FusionReport:
    target: str
    fusions: dict[str, int]  # rule family -> times it fired
    op_counts: dict[str, int]  # "domain::Op" for non-standard domains, else "Op"
    opset: int
    seconds: float


def op_counts(model: ir.Model) -> dict[str, int]:
    counts = Counter(f"{node.domain}::{node.op_type}" if node.domain else node.op_type for node in model.graph)
    return dict(counts.most_common())


def _normalize_kv_concat(model: ir.Model) -> None:
    """Write the past-KV Concat of each present output with a negative axis, the form the fusion patterns match."""
    for node in model.graph:
        output = node.outputs[0]
        rank = len(output.shape) if output.shape is not None else None
        if node.op_type == "Concat" and output.is_graph_output() and rank:
            axis = node.attributes["axis"].value
            if axis >= 0:
                node.attributes["axis"] = ir.AttrInt64("axis", axis - rank)


class SdpaToAttention(pattern.RewriteRuleClassBase):
    """onnxscript's intermediate SDPA node (what its SDPA rules recognize) -> the standard opset-23 Attention."""

    def pattern(self, op, query, key, value, mask):
        return op.SDPA(query, key, value, mask, _domain="ai.onnxruntime._fusion", _outputs=["attention"])

    def check(self, context, attention, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if attention.producer().attributes.get_string("key_format", "BHSd") != "BHSd":
            return result.fail("key is transposed (BHdS); the standard Attention takes BHSd keys")
        return result

    def rewrite(self, op, query, key, value, mask, attention, **_):
        scale = attention.producer().attributes.get_float("scale", None)
        return op.Attention(query, key, value, mask, **({"scale": scale} if scale is not None else {}))


def _fuse_for_onnxruntime(model: ir.Model) -> tuple[ir.Model, dict[str, int]]:
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model, counts = optimize_for_ort(model)
    return model, {name: count for name, count in counts.items() if count}


def _fuse_standard(model: ir.Model) -> tuple[ir.Model, dict[str, int]]:
    from onnxscript import optimizer, version_converter
    from onnxscript.rewriter.ort_fusions import sdpa

    version_converter.convert_version(model, STANDARD_OPSET)
    optimizer.optimize(model)
    counts = {"sdpa": sdpa.fuse_sdpa(model)}
    counts["attention"] = pattern.RewriteRuleSet([SdpaToAttention.rule()]).apply_to_model(model)
    optimizer.optimize(model)
    return model, {name: count for name, count in counts.items() if count}


def fuse_graph(source: str | Path, destination: str | Path, target: str) -> FusionReport:
    """Read the graph at `source`, fuse it for `target`, write it (weights as external data) to `destination`."""
    if target not in TARGETS:
        raise ExportError(f"unknown fusion target {target!r}; choose {', '.join(TARGETS)}")
    started = time.perf_counter()
    model = ir.load(source)
    _normalize_kv_concat(model)
    model, fusions = _fuse_for_onnxruntime(model) if target == "onnxruntime" else _fuse_standard(model)
    counts = op_counts(model)
    attention = sum(count for op, count in counts.items() if op.split("::")[-1] in ATTENTION_OPS)
    if not attention:
        raise ExportError(f"no attention was fused for {target} (fusions applied: {fusions or 'none'}); the graph "
                          "does not have the attention pattern this pass knows")  # fmt: skip
    destination = Path(destination)
    ir.save(model, destination, external_data=f"{destination.name}.data")
    opset = model.opset_imports.get("", STANDARD_OPSET)
    return FusionReport(target, fusions, counts, opset, time.perf_counter() - started)


@dataclass(frozen=True)
class OptimizeResult:
    artifact: Artifact
    report: FusionReport
    parity: object  # ParityReport


def optimize_bundle(
    bundle: str | Path, target: str = "onnxruntime", source: str = "onnx-fp32", force: bool = False
) -> OptimizeResult:
    """Add the fused graph for `target` to the bundle, only if it keeps fp32 parity with the PyTorch reference."""
    from gptdeploy.bundle import GOLDEN_FILE, TOKENIZER_FILE
    from gptdeploy.golden import load_golden
    from gptdeploy.parity import check_parity
    from gptdeploy.runtimes.ort_runtime import OrtRuntime
    from gptdeploy.tokenizer import Tokenizer

    if target not in TARGETS:
        raise ExportError(f"unknown fusion target {target!r}; choose {', '.join(TARGETS)}")
    loaded = load_bundle(bundle)
    origin = loaded.artifact(name=source)
    if origin.kind != "onnx" or origin.precision != "fp32":
        raise ExportError(f"fusion starts from an fp32 ONNX graph; {source!r} is {origin.kind} {origin.precision}")
    name, folder = TARGETS[target]
    if any(artifact.name == name for artifact in loaded.artifacts) and not force:
        raise ExportError(f"{loaded.path} already has {name!r}; pass --force to rebuild it")
    with staged_folder(loaded.path, folder) as staging:
        logger.info("fusing %s for %s", source, target)
        report = fuse_graph(loaded.file(origin.path), staging / GRAPH_FILE, target)
        logger.info("fused: %s", ", ".join(f"{rule} {count}" for rule, count in report.fusions.items()))
        logger.info("checking the fused graph against the PyTorch reference on ONNX Runtime")
        tokenizer = Tokenizer.load(loaded.file(TOKENIZER_FILE))
        with OrtRuntime(staging / GRAPH_FILE, loaded.config, tokenizer) as runtime:
            parity = check_parity(runtime, load_golden(loaded.file(GOLDEN_FILE)))
        if not parity:
            raise ExportError(f"the {target} fused graph failed parity: {'; '.join(parity.failures)}")
    details = {"source": source, "target": target, "fusions": report.fusions, "op_counts": report.op_counts,
               "fusion_seconds": report.seconds, "parity": parity.to_dict()}  # fmt: skip
    artifact = Artifact(name, "onnx", "fp32", f"{folder}/{GRAPH_FILE}", folder_files(loaded.path, folder),
                        report.opset, details)  # fmt: skip
    add_artifact(loaded.path, artifact, replace_existing=force)
    return OptimizeResult(artifact, report, parity)
