"""The rewrite rules behind `gptdeploy optimize`, on onnx_ir graphs (imported only when a graph is fused: onnxscript
takes seconds to import). `fusion.py` says what each target makes and why.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir
from onnxscript.rewriter import pattern

STANDARD_OPSET = 23


def normalize_kv_concat(model: ir.Model) -> None:
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


def fuse_for_onnxruntime(model: ir.Model) -> tuple[ir.Model, dict[str, int]]:
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


def fuse_standard(model: ir.Model) -> tuple[ir.Model, dict[str, int]]:
    from onnxscript import optimizer, version_converter
    from onnxscript.rewriter.ort_fusions import sdpa

    version_converter.convert_version(model, STANDARD_OPSET)
    optimizer.optimize(model)
    counts = {"sdpa": sdpa.fuse_sdpa(model)}
    counts["attention"] = pattern.RewriteRuleSet([SdpaToAttention.rule()]).apply_to_model(model)
    optimizer.optimize(model)
    return model, {name: count for name, count in counts.items() if count}
