"""The graph transforms behind `gptdeploy quantize` (`quantize.py` describes the schemes): an fp32 graph file in, a
quantized graph file out.

Each uses ONNX Runtime's own quantization tools. The exported graph holds the tied LM head as
`MatMul(x, Transpose(W))` (W is shared with the embedding Gather), and the quantizers only touch a MatMul whose
weight is an initializer, so `prepare_weights` folds the transpose into an initializer first: the LM head is the
largest matrix of a small model.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import logging
from collections.abc import Callable, Collection, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

logger = logging.getLogger(__name__)

LM_HEAD = "lm_head"
INT4_OPSET = 21  # the first with int4 tensors (the embedding tables' GatherBlockQuantized)
# MatMulNBits computes with int8 activations on CPU: on an 8-layer, 512-wide model a decode step 14% and prefill 40%
# faster than with fp32 activations; on the demo model top-1 agreement 96.0% instead of 96.4%, the same task accuracy.
INT4_ACCURACY_LEVEL = 4
INT4_BLOCK_SIZE = 32  # weights per int4 scale; on the demo model 128 (the tool's default) cost 4% top-1, 32 cost 1.5%
# Op types fp16 graphs keep in fp32: norms (fused or decomposed: x^2, mean, sqrt, 1/x), softmax, and Pow, whose
# cube in the tanh GELU overflows fp16 above 40. Residual adds are kept by node (see `residual_adds`).
FP32_OPS = ("LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
            "SkipSimplifiedLayerNormalization", "RMSNormalization", "Softmax", "Pow", "ReduceMean", "Sqrt",
            "Reciprocal")  # fmt: skip


def prepare_weights(model: onnx.ModelProto, quantized: Collection[str] | None = None) -> onnx.ModelProto:
    """Give the weight matmuls named in `quantized` (default: all) the form quantizers look for, `MatMul(x, W)` with
    W an initializer (in place), and name unnamed nodes so the quantizers can be told which ones to skip.

    The tied LM head reads the embedding table transposed: `Transpose(W)` in the exported graph, `FusedMatMul(x, W,
    transB=1)` in ONNX Runtime's fused one. Either becomes a MatMul on a transposed copy of W when the head is
    quantized, or when the embedding Gather is (a quantizer replaces a quantized table for all its readers, so a head
    kept in fp32 needs a copy of its own); otherwise it keeps its form, so the file does not hold the table twice.
    """
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    readers = collections.defaultdict(list)
    for index, node in enumerate(graph.node):
        node.name = node.name or f"{node.op_type}_{index}"
        for name in node.input:
            readers[name].append(node)

    def needs_copy(node: onnx.NodeProto, weight: str) -> bool:
        head = [reader.name for reader in readers[node.output[0]]] if node.op_type == "Transpose" else [node.name]
        in_place = [reader.name for reader in readers[weight] if not _transposed_weight(reader, initializers)]
        return quantized is None or bool(set(quantized) & {*head, *in_place})

    nodes = []
    for node in graph.node:
        weight = _transposed_weight(node, initializers)
        if not weight or not needs_copy(node, weight):
            nodes.append(node)
            continue
        transposed = node.output[0] if node.op_type == "Transpose" else f"{weight}.T"
        if transposed not in initializers:
            array = np.ascontiguousarray(numpy_helper.to_array(initializers[weight]).T)
            initializers[transposed] = numpy_helper.from_array(array, transposed)
            graph.initializer.append(initializers[transposed])
        if node.op_type == "FusedMatMul":
            nodes.append(onnx.helper.make_node("MatMul", [node.input[0], transposed], list(node.output), node.name))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    for tensor in [tensor for tensor in graph.initializer if tensor.name not in used]:
        graph.initializer.remove(tensor)
    return model


def _transposed_weight(node: onnx.NodeProto, initializers: Collection[str]) -> str | None:
    """The 2-D weight a node reads transposed, `Transpose(W)` or `FusedMatMul(x, W, transB=1)`, else None."""
    attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
    if node.op_type == "Transpose" and node.input[0] in initializers and attributes.get("perm", [1, 0]) == [1, 0]:
        return node.input[0] if len(initializers[node.input[0]].dims) == 2 else None
    if node.op_type == "FusedMatMul" and node.input[1] in initializers and attributes == {"transB": 1}:
        return node.input[1] if len(initializers[node.input[1]].dims) == 2 else None
    return None


def load_prepared(source: Path, quantized: Collection[str] | None = None) -> onnx.ModelProto:
    return prepare_weights(onnx.load(str(source)), quantized)


def layer_groups(model: onnx.ModelProto, n_layer: int, embeddings: bool = False) -> dict[str, list[str]]:
    """The nodes quantization touches, by layer: "embeddings" (Gathers from a weight, when asked), "lm_head" (the
    weight MatMul producing a graph output) and "block.{i}" (the other weight MatMuls).

    Every block has the same weights, and each block's MatMuls come before the next block's in any topological
    order, so the others split into n_layer equal runs; if they do not (an unexpected graph), each MatMul is a group.
    """
    shapes = {tensor.name: tuple(tensor.dims) for tensor in model.graph.initializer}
    outputs = {value.name for value in model.graph.output}
    matmuls = [node for node in model.graph.node if node.op_type == "MatMul" and node.input[1] in shapes]
    gathers = [node.name for node in model.graph.node if node.op_type == "Gather" and node.input[0] in shapes]
    groups = {"embeddings": gathers if embeddings else [], LM_HEAD: [n.name for n in matmuls if n.output[0] in outputs]}
    body = [node for node in matmuls if node.output[0] not in outputs]
    size = len(body) // n_layer if n_layer else 0
    runs = [body[i * size : (i + 1) * size] for i in range(n_layer)] if size and size * n_layer == len(body) else []
    if runs and len({tuple(shapes[node.input[1]] for node in run) for run in runs}) == 1:
        groups.update({f"block.{i}": [node.name for node in run] for i, run in enumerate(runs)})
    else:
        groups.update({node.name: [node.name] for node in body})
    return {name: nodes for name, nodes in groups.items() if nodes}


def layer_groups_of(source: Path, n_layer: int, embeddings: bool) -> dict[str, list[str]]:
    """`layer_groups` of the graph file at `source`, prepared as the quantizers see it."""
    return layer_groups(load_prepared(source), n_layer, embeddings)


def _every(model: onnx.ModelProto, embeddings: bool) -> list[str]:
    return [node for nodes in layer_groups(model, 0, embeddings).values() for node in nodes]


def quantize_int8_dynamic(source: Path, target: Path, nodes: list[str] | None = None) -> dict:
    """int8 weights (per output channel), uint8 activations quantized at run time (MatMulInteger), int8 embedding
    tables; `nodes`: the nodes to quantize (default: every one `layer_groups` lists). Tensors whose type shape
    inference cannot tell (outputs of contrib ops such as GroupQueryAttention) are float32 in our graphs."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = load_prepared(source, nodes)
    nodes = nodes or _every(model, embeddings=True)
    with quiet_quantizer():
        quantize_dynamic(model, target, op_types_to_quantize=["MatMul", "Gather"], nodes_to_quantize=nodes,
                         per_channel=True, weight_type=QuantType.QInt8, use_external_data_format=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
    return {}


def quantize_int8_static(
    source: Path, target: Path, nodes: list[str] | None = None, reader: Callable[[], object] | None = None
) -> dict:
    """Symmetric int8 QDQ on the inputs of the weight MatMuls (per-channel weights, calibrated activations).

    `reader()` makes a calibration data reader. The calibrated ranges are cached beside the candidates' folders (the
    guardrail's work folder) for the next candidate, where quantize_static has `calibration_cache_path` (older ONNX
    Runtime versions calibrate again). MatMul outputs stay
    unquantized: TensorRT fuses the input QDQ pairs into an int8 GEMM and ONNX Runtime into an integer MatMul, and an
    output pair would only add rounding error.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    model = load_prepared(source, nodes)
    nodes = nodes or _every(model, embeddings=False)
    cache = target.parent.parent / "calibration.json"
    cached = {"calibration_cache_path": cache} if _supports_calibration_cache(quantize_static) else {}
    data = None if cached and cache.is_file() else reader()
    with quiet_quantizer():
        quantize_static(model, target, data, quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                        nodes_to_quantize=nodes, per_channel=True, activation_type=QuantType.QInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                        use_external_data_format=True,
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                       "OpTypesToExcludeOutputQuantization": ["MatMul"]},
                        **cached)  # fmt: skip
    return {}


def convert_fp16(source: Path, target: Path, nodes: None = None, io_dtype: str = "fp32") -> dict:
    """fp16 graph with fp32 islands (FP32_OPS and the residual adds); IO (logits and KV cache) in `io_dtype`.

    ONNX Runtime's converter handles the KV outputs that are also read inside the graph (present.* feeds attention)
    with keep_io_types, where onnxconverter-common's breaks.
    """
    import onnx_ir as ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(source))
    converted = convert_float_to_float16(model, keep_io_types=io_dtype == "fp32", op_block_list=list(FP32_OPS),
                                         node_block_list=residual_adds(model))  # fmt: skip
    # The converter retypes the exporter's value_info entries for initializers to fp16 even where it keeps the
    # initializer fp32 (norm weights); the initializer's own type is the truth, so drop the stale copies.
    initializers = {tensor.name for tensor in converted.graph.initializer}
    stale = [value for value in converted.graph.value_info if value.name in initializers]
    for value in stale:
        converted.graph.value_info.remove(value)
    sorted_graph = ir.from_proto(converted)  # the converter appends its Casts at the end of the node list
    sorted_graph.graph.sort()
    save_graph(ir.to_proto(sorted_graph), target)
    return {}


def quantize_int4(source: Path, target: Path, nodes: list[str] | None = None) -> dict:
    """Weight-only int4, symmetric, one scale per INT4_BLOCK_SIZE weights (MatMulNBits, and GatherBlockQuantized for the
    embedding tables); activations stay fp32. `nodes`: the nodes to quantize (default: all `layer_groups` lists)."""
    from onnx import version_converter

    model = load_prepared(source, nodes)
    if graph_opset(model) < INT4_OPSET:  # the quantizer would only relabel the opset ("may not be a valid model")
        model = version_converter.convert_version(model, INT4_OPSET)
    skip = sorted(set(_every(model, embeddings=True)) - set(nodes)) if nodes else []
    with quiet_quantizer():
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=INT4_BLOCK_SIZE, is_symmetric=True,
                                         accuracy_level=INT4_ACCURACY_LEVEL, nodes_to_exclude=skip,
                                         op_types_to_quantize=("MatMul", "Gather"))  # fmt: skip
        quantizer.process()
        quantizer.model.save_model_to_file(str(target), use_external_data_format=True)
    return {}


def residual_adds(model: onnx.ModelProto) -> list[str]:
    """Adds of two computed tensors (residual stream, attention mask, rotary halves), not bias adds."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    return [node.name for node in model.graph.node
            if node.op_type == "Add" and not any(name in initializers for name in node.input)]  # fmt: skip


def save_graph(model: onnx.ModelProto, target: Path) -> None:
    """The graph with its weights in `<name>.data` next to it, like every graph in a bundle."""
    onnx.save_model(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=f"{target.name}.data", size_threshold=1024)  # fmt: skip


def _supports_calibration_cache(quantize_static: Callable) -> bool:
    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


class _NotPreprocessed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Keep ONNX Runtime's quantizers from reconfiguring logging and from printing what users cannot act on.

    They log through the root logger's module functions, which install a root handler when there is none (and
    matmul_nbits_quantizer calls logging.basicConfig on import), after which every library's logs print twice; the
    root logger is restored on exit. Also muted: the advice to pre-process (symbolic shape inference and ORT graph
    optimization, skipped on purpose: the graph keeps standard ops that TensorRT reads) and per-node INFO lines.
    """
    root, nbits = logging.getLogger(), logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    handlers, level, nbits_level, muted = list(root.handlers), root.level, nbits.level, _NotPreprocessed()
    root.addFilter(muted)
    nbits.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeFilter(muted)
        root.handlers[:] = handlers
        root.setLevel(level)
        nbits.setLevel(nbits_level)


def graph_opset(model: onnx.ModelProto) -> int:
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))
