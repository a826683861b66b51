"""The rewrite rules behind `gptdeploy optimize --target tensorrt`, on onnx_ir graphs (imported only when a graph
is fused: onnxscript takes seconds to import). `fusion.py` says what each target makes and why.
"""

from __future__ import annotations

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


def fuse_standard(model: ir.Model) -> tuple[ir.Model, dict[str, int]]:
    from onnxscript import optimizer, version_converter
    from onnxscript.rewriter.ort_fusions import sdpa

    version_converter.convert_version(model, STANDARD_OPSET)
    optimizer.optimize(model)
    counts = {"sdpa": sdpa.fuse_sdpa(model)}
    counts["attention"] = pattern.RewriteRuleSet([SdpaToAttention.rule()]).apply_to_model(model)
    optimizer.optimize(model)
    return model, {name: count for name, count in counts.items() if count}
