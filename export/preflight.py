"""Pre-flight check of a bundle's ONNX graphs for TensorRT, without TensorRT: run it before shipping to a device.

The check is static: op types and domains against what TensorRT's ONNX parser imports for a target version, the
data type each op sees against the types that op supports there, the opset, the restrictions the parser documents
(constant axes, the attention inputs it rejects, zero points), inputs that would become shape tensors, and the
external weights the graph points to. It cannot prove an engine will build (only TensorRT can), but what it
reports would make the build fail, or work only partly, on that version.

What the parser supports per version is the table in `tensorrt_support.py`.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from gptdeploy.bundle import Artifact, Bundle, load_bundle
from gptdeploy.errors import ConfigError
from gptdeploy.export.op_counts import count_ops
from gptdeploy.export.tensorrt_support import (
    ADDED_IN,
    CONSTANT_INPUTS,
    DEFAULT_TRT_VERSION,
    ONNX_TYPES,
    QUANTIZED_OUTPUTS,
    SHAPE_OPERANDS,
    max_opset,
    parse_trt_version,
    supported_ops,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    severity: str  # "error": the build fails or misses this node; "warning": it may build, check on the device
    code: str  # short tag: unsupported-op, contrib-op, dtype, opset, restriction, shape-input, external-data, ...
    message: str
    node: str | None = None  # node name (or the tensor it produces) for node-level findings
    op_type: str | None = None


@dataclass(frozen=True)
class GraphCheck:
    artifact: str  # artifact name, or the graph file for a graph checked on its own
    path: str
    opset: int | None
    findings: list[Finding] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)
    int64_tensors: int = 0  # native in TensorRT >= 9; counted because they cost memory traffic in shape math

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def __bool__(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class BundleCheck:
    bundle: str
    target: str
    trt_version: str
    graphs: list[GraphCheck]

    def __bool__(self) -> bool:
        return all(self.graphs)

    def to_dict(self) -> dict:
        graphs = [{**asdict(g), "passed": bool(g), "errors": len(g.errors), "warnings": len(g.warnings)}
                  for g in self.graphs]  # fmt: skip
        return {"bundle": self.bundle, "target": self.target, "trt_version": self.trt_version,
                "passed": bool(self), "graphs": graphs}  # fmt: skip


def installed_trt_version() -> str | None:
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt.__version__


def check_bundle(
    bundle: str | Path | Bundle, target: str = "tensorrt", trt_version: str | None = None, artifact: str | None = None
) -> BundleCheck:
    """Check a bundle's ONNX artifacts (or the one named `artifact`) for TensorRT `trt_version`.

    Without a version, the installed TensorRT's, else the release the support table reflects.
    """
    if target != "tensorrt":
        raise ConfigError(f"the pre-flight check knows the target 'tensorrt' only, got {target!r}")
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    trt_version = trt_version or installed_trt_version() or DEFAULT_TRT_VERSION
    version = parse_trt_version(trt_version)
    chosen = [bundle.artifact(name=artifact)] if artifact else [a for a in bundle.artifacts if a.kind == "onnx"]
    if any(a.kind != "onnx" for a in chosen):
        raise ConfigError(f"artifact {artifact!r} is not an ONNX graph; the check reads ONNX graphs")
    expected_inputs = bundle.manifest.get("io", {}).get("inputs")
    graphs = [_check_artifact(bundle, a, version, expected_inputs) for a in chosen]
    return BundleCheck(str(bundle.path), target, trt_version, graphs)


def _check_artifact(bundle: Bundle, artifact: Artifact, version: tuple[int, int], inputs: list | None) -> GraphCheck:
    logger.info("checking %s (%s) for TensorRT %d.%d", artifact.name, artifact.path, *version)
    folder = PurePosixPath(artifact.path).parent
    paths = [PurePosixPath(f) for f in artifact.files]
    listed = {p.relative_to(folder).as_posix() for p in paths if folder in p.parents}
    check = check_graph(bundle.file(artifact.path), version, artifact.name, listed_files=listed)
    if inputs is not None:
        graph_inputs = _graph_input_names(bundle.file(artifact.path))
        if graph_inputs != list(inputs):
            check.findings.append(Finding("error", "io", f"graph inputs {graph_inputs} differ from the bundle's "
                                          f"{list(inputs)}: the engine profiles are set by those names"))  # fmt: skip
    return check


def _graph_input_names(path: Path) -> list[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    return [value.name for value in graph.input if value.name not in initializers]


def check_graph(
    path: str | Path, version: tuple[int, int], name: str | None = None, listed_files: set[str] | None = None
) -> GraphCheck:
    """Check one ONNX file for TensorRT `version` ((major, minor)); weights stay on disk.

    `listed_files` (paths relative to the graph's folder) are the files the artifact records; external data outside
    them is reported.
    """
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    checker = _GraphChecker(model, version)
    checker.check_opsets()
    checker.check_graph_io()
    checker.check_nodes(model.graph.node)
    checker.check_initializers(path.parent, listed_files, path)
    return GraphCheck(name or path.name, str(path), opset, checker.findings, count_ops(model.graph.node),
                      checker.int64_tensors())  # fmt: skip


class _GraphChecker:
    """Walks one model; every problem found is appended to `findings`."""

    def __init__(self, model, version: tuple[int, int]):
        import onnx

        self.onnx, self.model, self.version = onnx, model, version
        self.ops = supported_ops(version)
        self.findings: list[Finding] = []
        self.opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
        try:
            graph = onnx.shape_inference.infer_shapes(model, strict_mode=False).graph
        except onnx.shape_inference.InferenceError as error:
            # Declared value_info that disagrees with the ops (stale after a type conversion): TensorRT ignores
            # it and types every tensor from its producer, so the check does the same.
            self.add("warning", "value-info", f"the graph's declared types disagree with its ops "
                     f"({str(error).splitlines()[0]}); checked with the types the ops produce")  # fmt: skip
            bare = onnx.ModelProto()
            bare.CopyFrom(model)
            del bare.graph.value_info[:]
            try:
                graph = onnx.shape_inference.infer_shapes(bare, strict_mode=False).graph
            except onnx.shape_inference.InferenceError:
                graph = model.graph  # only the declared types are known
        self.types = {v.name: v.type for v in [*graph.value_info, *graph.input, *graph.output]}
        self.constants = {init.name: init for init in graph.initializer}
        for node in model.graph.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                self.constants[node.output[0]] = value
        self.graph_inputs = {v.name for v in model.graph.input} - set(self.constants)

    def add(self, severity: str, code: str, message: str, node=None) -> None:
        label = (node.name or f"<{node.op_type} -> {node.output[0] if node.output else '?'}>") if node else None
        self.findings.append(Finding(severity, code, message, label, node.op_type if node else None))

    def dtype(self, name: str) -> str | None:
        """ONNX type name of a tensor ('FLOAT', 'INT64', ...), None if unknown."""
        if name in self.constants and self.constants[name] is not None:
            return self.onnx.TensorProto.DataType.Name(self.constants[name].data_type)
        proto = self.types.get(name)
        if proto is None or not proto.HasField("tensor_type") or not proto.tensor_type.elem_type:
            return None
        return self.onnx.TensorProto.DataType.Name(proto.tensor_type.elem_type)

    def int64_tensors(self) -> int:
        return sum(1 for name in set(self.types) | set(self.constants) if self.dtype(name) == "INT64")

    def check_opsets(self) -> None:
        opset = self.opsets.get("ai.onnx")
        newest = max_opset(self.version)
        if opset is not None and opset > newest:
            self.add(
                "warning",
                "opset",
                f"default-domain opset {opset} is newer than the {newest} TensorRT "
                f"{self.version[0]}.{self.version[1]} was built against; ops changed since may not import",
            )
        if opset is not None and opset < 9:
            self.add("warning", "opset", f"opset {opset} is older than 9, the oldest the parser supports")

    def check_graph_io(self) -> None:
        graph = self.model.graph
        for value in [*graph.input, *graph.output]:
            if value.name in self.constants:
                continue
            kind = value.type.WhichOneof("value")
            if kind != "tensor_type":
                self.add("error", "io-type", f"graph IO {value.name!r} is a {kind}; TensorRT takes tensors only")
                continue
            dtype = self.dtype(value.name)
            if dtype is not None and dtype not in {*ONNX_TYPES.values()} - {"INT4", "FLOAT4E2M1"}:
                self.add("error", "dtype", f"graph IO {value.name!r} is {dtype}; TensorRT has no such IO type")
        for value in graph.input:
            if value.name not in self.constants and not value.type.tensor_type.HasField("shape"):
                self.add("error", "dynamic-rank", f"graph input {value.name!r} has no shape: TensorRT needs every "
                         "input's rank at build time")  # fmt: skip

    def check_initializers(self, folder: Path, listed_files: set[str] | None, graph_path: Path) -> None:
        """Weights of types TensorRT lacks, and external data the parser will look for next to the graph."""
        if graph_path.stat().st_size >= 2**31:
            self.add("error", "size", f"{graph_path.name} is over 2 GiB: protobuf cannot parse it; save the "
                     "weights as external data")  # fmt: skip
        tensors = [*self.model.graph.initializer, *(t for t in self.constants.values() if t is not None)]
        for tensor in tensors:
            dtype = self.onnx.TensorProto.DataType.Name(tensor.data_type)
            if dtype == "STRING":
                self.add("error", "dtype", f"initializer {tensor.name!r} holds strings; TensorRT has no string type")
            elif dtype == "DOUBLE":
                self.add("warning", "dtype", f"initializer {tensor.name!r} is float64: the parser casts it to float32,"
                         " clamping to ±FLT_MAX")  # fmt: skip
            if tensor.data_location == self.onnx.TensorProto.EXTERNAL:
                self._check_external(tensor, folder, listed_files)

    def _check_external(self, tensor, folder: Path, listed_files: set[str] | None) -> None:
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        file = (folder / location).resolve()
        if not location or Path(location).is_absolute() or folder.resolve() not in file.parents:
            self.add("error", "external-data", f"weights of {tensor.name!r} point outside the graph's folder "
                     f"({location!r}); the parser reads external data next to the graph")  # fmt: skip
            return
        if not file.is_file():
            self.add("error", "external-data", f"weights of {tensor.name!r} are in {location}, which is missing")
            return
        end = int(info.get("offset", 0)) + int(info.get("length", 0))
        if end > file.stat().st_size:
            self.add("error", "external-data", f"weights of {tensor.name!r} end at byte {end}, past the end of "
                     f"{location} ({file.stat().st_size} bytes): truncated")  # fmt: skip
        if listed_files is not None and Path(location).as_posix() not in listed_files:
            self.add("warning", "external-data", f"{location} is not among the artifact's files: a copied "
                         "bundle may lose it")  # fmt: skip

    def check_nodes(self, nodes) -> None:
        """Every node of the main graph: the exporter inlines functions and emits no control flow (no subgraphs)."""
        for node in nodes:
            domain = node.domain or "ai.onnx"
            if domain == "com.microsoft":
                self.add("error", "contrib-op", f"{node.op_type} is an ONNX Runtime contrib op (com.microsoft); "
                         "TensorRT has no importer for it: build from a standard-opset artifact", node)  # fmt: skip
                continue
            if domain != "ai.onnx":
                self.add("error", "custom-op", f"{domain}.{node.op_type} needs a TensorRT plugin registered under "
                         "that name; gptdeploy loads no plugins", node)  # fmt: skip
                continue
            if node.op_type not in self.ops:
                since = ADDED_IN.get(node.op_type)
                why = f"it needs TensorRT >= {since[0]}.{since[1]}" if since else "the parser has no importer for it"
                self.add("error", "unsupported-op", f"{node.op_type} is not supported by TensorRT "
                         f"{self.version[0]}.{self.version[1]}: {why}", node)  # fmt: skip
                continue
            self._check_types(node)
            self._check_restrictions(node)

    def _check_types(self, node) -> None:
        if node.op_type == "Constant":
            return
        checked = self._typed_tensors(node)
        allowed = self.ops[node.op_type]
        for name in checked:
            dtype = self.dtype(name)
            if dtype is not None and dtype not in allowed:
                self.add("error", "dtype", f"{node.op_type} on {dtype} ({name!r}) is not supported; TensorRT runs it "
                         f"on {', '.join(sorted(allowed))}", node)  # fmt: skip
                return

    def _typed_tensors(self, node) -> list[str]:
        """The tensors whose type the support table is about: those bound to the op's main type parameter."""
        if node.op_type in ("Cast", "CastLike", "ConstantOfShape"):
            return [*node.input[:1], *node.output[:1]] if node.op_type != "ConstantOfShape" else list(node.output[:1])
        try:
            schema = self.onnx.defs.get_schema(node.op_type, self.opsets.get("ai.onnx", 1), "")
        except self.onnx.defs.SchemaError:
            return list(node.input[:1])
        params = [p.type_str for p in schema.inputs]
        if not params:
            return []
        main = "T" if "T" in params else params[0]
        names = []
        for position, name in enumerate(node.input):
            param = params[min(position, len(params) - 1)]
            if name and param == main:
                names.append(name)
        return names

    def _check_restrictions(self, node) -> None:
        """The per-op restrictions operators.md lists that a static look can decide, for the ops our exporter,
        fusion and quantization emit."""
        attrs = {a.name: a for a in node.attribute}
        for position, what in CONSTANT_INPUTS.get(node.op_type, {}).items():
            if len(node.input) > position and node.input[position] and node.input[position] not in self.constants:
                self.add("error", "restriction", f"{node.op_type}'s {what} must be a build-time constant", node)
        for op, position in SHAPE_OPERANDS.items():
            if node.op_type == op and len(node.input) > position and node.input[position] in self.graph_inputs:
                self.add("error", "shape-input", f"graph input {node.input[position]!r} feeds {op} as a shape: it "
                         "would be a shape-tensor input, which the engine profiles do not set", node)  # fmt: skip
        check = {
            "Attention": self._attention, "LayerNormalization": self._layer_norm, "QuantizeLinear": self._quantize,
            "DequantizeLinear": self._dequantize,
        }.get(node.op_type)  # fmt: skip
        if check is not None:
            check(node, attrs)
        if node.op_type in ("Squeeze", "Unsqueeze") and len(node.input) > 1 and node.input[1] not in self.constants:
            self.add("warning", "restriction", f"{node.op_type}'s axes are computed: the parser must resolve them to "
                     "a constant at build time", node)  # fmt: skip

    def _attention(self, node, attrs) -> None:
        unsupported = {4: "past_key", 5: "past_value", 6: "nonpad_kv_seqlen"}
        for position, what in unsupported.items():
            if len(node.input) > position and node.input[position]:
                self.add("error", "restriction", f"TensorRT's parser rejects Attention with a {what} input; "
                         "concatenate the cache into K and V before the node", node)  # fmt: skip
        for position, what in {1: "present_key", 2: "present_value", 3: "qk_matmul_output"}.items():
            if len(node.output) > position and node.output[position]:
                self.add("error", "restriction", f"TensorRT's parser takes Attention with one output (Y); "
                         f"{what} is set", node)  # fmt: skip
        for name in ("softcap", "qk_matmul_output_mode"):
            if name in attrs and (attrs[name].f or attrs[name].i):
                self.add("error", "restriction", f"Attention's {name} attribute is unsupported by TensorRT", node)
        for position, what in {0: "Q", 1: "K", 2: "V", 3: "attn_mask"}.items():
            rank = self._rank(node.input[position]) if len(node.input) > position and node.input[position] else None
            if rank is not None and rank != 4:
                self.add("error", "restriction", f"Attention's {what} is {rank}-D; TensorRT takes 4-D only", node)

    def _layer_norm(self, node, attrs) -> None:
        if any(node.output[1:]):
            self.add("error", "restriction", "LayerNormalization: only the first output (Y) is supported", node)

    def _quantize(self, node, attrs) -> None:
        self._zero_point(node, 2)
        out = self.dtype(node.output[0])
        if out is not None and out not in QUANTIZED_OUTPUTS:
            self.add("error", "quantization", f"QuantizeLinear to {out}: TensorRT quantizes to signed INT8 (or FP8, "
                     "INT4, FP4) with zero point 0; re-quantize symmetric int8 (QInt8 activations and weights)",
                     node)  # fmt: skip

    def _dequantize(self, node, attrs) -> None:
        self._zero_point(node, 2)

    def _zero_point(self, node, position: int) -> None:
        if len(node.input) <= position or not node.input[position]:
            return
        zero_point = self.constants.get(node.input[position])
        if zero_point is None:
            self.add("warning", "quantization", f"{node.op_type}'s zero point is computed; TensorRT needs it 0", node)
        elif self.onnx.numpy_helper.to_array(zero_point).any():
            self.add("error", "quantization", f"{node.op_type} has a nonzero zero point: TensorRT supports symmetric "
                     "quantization only (zero point 0)", node)  # fmt: skip

    def _rank(self, name: str) -> int | None:
        proto = self.types.get(name)
        if proto is None or not proto.HasField("tensor_type") or not proto.tensor_type.HasField("shape"):
            return None
        return len(proto.tensor_type.shape.dim)
