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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx_ir as ir
from onnxscript.rewriter import pattern

from gptdeploy.bundle import Artifact, add_artifact, folder_files, load_bundle, staged_folder
from gptdeploy.errors import ExportError
from gptdeploy.export.op_counts import count_ops

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


def _normalize_kv_concat(model: ir.Model) -> None:
    """Write the past-KV Concat of each present output with a negative axis, the form the fusion patterns match."""
    for node in model.graph:
        output = node.outputs[0]
        rank = len(output.shape) if output.shape is not None else None
        if node.op_type == "Concat" and output.is_graph_output() and rank:
            axis = node.attributes["axis"].value
            if axis >= 0:
                node.attributes["axis"] = ir.AttrInt64("axis", axis - rank)


class _LastAxisReduceMean(pattern.RewriteRuleClassBase):
    """`ReduceMean(x, axes=[rank - 1])` -> `axes=[-1]`: the RMSNorm pattern matches the negative axis only."""

    def pattern(self, op, x, axes):
        return op.ReduceMean(x, axes, keepdims=1, noop_with_empty_axes=0)

    def check(self, context, x, axes, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        rank = x.shape.rank() if x.shape is not None else None
        if rank is None or axes.const_value is None or axes.const_value.numpy().tolist() != [rank - 1]:
            return result.fail("not a mean over the last axis written as a positive index", axes)
        return result

    def rewrite(self, op, x, **_):
        return op.ReduceMean(x, op.Constant(value_ints=[-1]), keepdims=1, noop_with_empty_axes=0)


class _RotaryAnglesAsMatMul(pattern.RewriteRuleClassBase):
    """The model's rotary cos/sin, `cos(cat(p * inv_freq, p * inv_freq))[:, None]` with p = position_ids[..., None],
    -> transformers' `cos(cat(f, f))[:, None]` with f = (inv_freq[None, :, None] @ position_ids[:, None]).T, the form
    onnxscript's cos/sin cache rule matches. A MatMul over one element is the same product, so the values are equal.
    """

    def pattern(self, op, position_ids, position_axis, inv_freq, head_axis):
        positions = op.Cast(op.Unsqueeze(position_ids, position_axis), to=ir.DataType.FLOAT)
        angles = op.Mul(positions, inv_freq)
        heads = op.Unsqueeze(op.Concat(angles, angles, axis=-1), head_axis)
        return op.Cos(heads), op.Sin(heads)

    def check(self, context, position_ids, position_axis, inv_freq, head_axis, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        if position_ids.shape is None or position_ids.shape.rank() != 2:
            return result.fail("position ids are not (batch, sequence)", position_ids)
        if not _is_constant(position_axis, [[2], [-1]]) or not _is_constant(head_axis, [[1]]):
            return result.fail("not the (batch, 1, sequence, head_dim) layout of the model's rotary angles")
        if inv_freq.const_value is None or inv_freq.shape is None or inv_freq.shape.rank() != 1:
            return result.fail("inverse frequencies are not a constant vector", inv_freq)
        return result

    def rewrite(self, op, position_ids, inv_freq, **_):
        column = op.Constant(value=ir.tensor(inv_freq.const_value.numpy().reshape(1, -1, 1)))
        positions = op.Cast(op.Unsqueeze(position_ids, op.Constant(value_ints=[1])), to=ir.DataType.FLOAT)
        freqs = op.Transpose(op.MatMul(column, positions), perm=[0, 2, 1])  # (B, T, hs/2)
        doubled = op.Concat(freqs, freqs, axis=-1)
        head_axis = op.Constant(value_ints=[1])
        return op.Unsqueeze(op.Cos(doubled), head_axis), op.Unsqueeze(op.Sin(doubled), head_axis)


def _is_constant(value: ir.Value, choices: list[list[int]]) -> bool:
    return value.const_value is not None and value.const_value.numpy().tolist() in choices


ORT_CANONICAL_FORMS = pattern.RewriteRuleSet([_LastAxisReduceMean.rule(), _RotaryAnglesAsMatMul.rule()])


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


def _ort_fusions() -> list[tuple[str, Callable[..., int]]]:
    """onnxscript's ORT fusions in the order its `optimize_for_ort` applies them, less the GroupQueryAttention ones.

    Its GroupQueryAttention rewrite drops the attention mask and takes each row's cache length from position_ids,
    i.e. it assumes a right-padded cache; on this graph's left-padded, concatenated cache it computes other logits.
    Its check that the mask is the causal one it drops does not protect us: onnxscript 0.7 tests that sub-match for
    None, and a failed match is a falsy result, not None, so the rule fires on grouped heads whatever the mask.
    """
    from onnx_ir.passes.common import CommonSubexpressionEliminationPass
    from onnxscript.rewriter.ort_fusions import (
        attention,
        bias_gelu,
        cos_sin_cache,
        erfgelu,
        gelu,
        mha,
        mha_bias,
        mha_scale,
        rms_normalization,
        rotary_embedding,
        sdpa,
        sdpa_via_mha,
        skip_normalization,
    )

    def eliminate_common_subexpressions(model: ir.Model) -> int:  # the cos/sin caches of all layers become one
        CommonSubexpressionEliminationPass()(model)
        return 0

    def fuse_sdpa(model: ir.Model) -> int:  # its rewrites add nodes the later patterns need shapes for
        return sdpa.fuse_sdpa(model, apply_shape_inference=True)

    return [
        ("erf_gelu", erfgelu.fuse_erfgelu),
        ("rms_normalization", rms_normalization.fuse_rms_normalization),
        ("skip_layer_normalization", skip_normalization.fuse_skip_layer_normalization),
        ("skip_rms_normalization", skip_normalization.fuse_skip_rms_normalization),
        ("rotary_embedding", rotary_embedding.fuse_rotary_embedding),
        ("cos_sin_cache", cos_sin_cache.fuse_cos_sin_cache),
        ("common_subexpressions", eliminate_common_subexpressions),
        ("partial_rotary_embedding", rotary_embedding.fuse_partial_rotary_embedding),
        ("sdpa", fuse_sdpa),
        ("mha1", mha.fuse_mha1),
        ("mha2", mha.fuse_mha2),
        ("mha_scale", mha_scale.fuse_mha_scale),
        ("mha_bias", mha_bias.fuse_mha_bias),
        ("attention", attention.fuse_attention),
        ("gelu", gelu.fuse_gelu),
        ("bias_gelu", bias_gelu.fuse_bias_gelu),
        ("sdpa_via_mha", sdpa_via_mha.replace_sdpa_by_mha),
    ]


def _fuse_for_onnxruntime(model: ir.Model) -> tuple[ir.Model, dict[str, int]]:
    from onnx_ir.passes.common import (
        LiftConstantsToInitializersPass,
        RemoveInitializersFromInputsPass,
        ShapeInferencePass,
    )
    from onnxscript import optimizer
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.ort_fusions import ORT_PATTERN_REWRITE_RULES, shape_optimization
    from onnxscript.rewriter.rules.common import gemm_to_matmul_add_rule

    canonical = ORT_CANONICAL_FORMS.apply_to_model(model)
    rewrite(model, [gemm_to_matmul_add_rule])
    ShapeInferencePass()(model)
    optimizer.optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimizer.optimize(model)
    counts = {"canonical_forms": canonical, **{name: fuse(model) for name, fuse in _ort_fusions()}}
    optimizer.optimize(model)  # inlines the intermediate nodes no fusion consumed, drops the unused ones
    rewrite(model, ORT_PATTERN_REWRITE_RULES)
    LiftConstantsToInitializersPass(lift_all_constants=False, size_limit=1)(model)
    RemoveInitializersFromInputsPass()(model)
    ShapeInferencePass()(model)
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
    counts = count_ops(model.graph)
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
