"""What TensorRT's ONNX parser imports, by TensorRT version: the table the pre-flight check reads.

It reflects the operator support list of onnx-tensorrt's `docs/operators.md` for TensorRT 10.15 ("opset 9 to opset
24"), with the operators its Changelog.md dates to later releases gated by version (Attention 10.14;
RMSNormalization, RotaryEmbedding, TensorScatter 10.15; DFT 11.2 per the TensorRT 11.2 release notes). Versions from
11.0 on are assumed to import at least what 10.15 does.
"""

from __future__ import annotations

from gptdeploy.errors import ConfigError

DEFAULT_TRT_VERSION = "10.15"  # the release the table below reflects exactly
MIN_TRT_VERSION = (10, 0)  # the name-based API and strongly typed networks this project builds with

_F = "FP32 FP16 BF16"
_FI = f"{_F} INT32 INT64"
_FIB = f"{_FI} BOOL"
_CONST = f"{_F} FP8 FP4 INT4 INT32 INT64 BOOL"
# op type -> the types TensorRT supports for its data input (operators.md, "Supported Types" column).
SUPPORTED_TYPES: dict[str, str] = {
    "Abs": _FI, "Acos": _F, "Acosh": _F, "Add": _FI, "And": "BOOL", "ArgMax": _FI, "ArgMin": _FI, "Asin": _F,
    "Asinh": _F, "Atan": _F, "Atanh": _F, "Attention": f"{_F} INT8 FP8", "AveragePool": _F,
    "BatchNormalization": _F, "BlackmanWindow": "FP32 FP16", "Cast": f"{_FI} UINT8 BOOL",
    "CastLike": f"{_FI} UINT8 BOOL", "Ceil": _F, "Celu": _F, "Clip": _F, "Concat": _FIB, "Constant": _CONST,
    "ConstantOfShape": _CONST, "Conv": _F, "ConvTranspose": _F, "Cos": _F, "Cosh": _F, "CumSum": _F,
    "DeformConv": "FP32 FP16", "DepthToSpace": _FI, "DequantizeLinear": "INT8 FP8 FP4 INT4", "DFT": "FP32 FP16",
    "Div": _FI, "Dropout": _F, "Einsum": _F, "Elu": _F, "Equal": _FI, "Erf": _F, "Exp": _F, "Expand": _FIB,
    "EyeLike": _FIB, "Flatten": _FIB, "Floor": _F, "Gather": _FIB, "GatherElements": _FIB, "GatherND": _FIB,
    "Gelu": f"{_F} INT8 INT32 INT64", "Gemm": _F, "GlobalAveragePool": _F, "GlobalLpPool": _F, "GlobalMaxPool": _F,
    "Greater": _FI, "GreaterOrEqual": _FI, "GridSample": "FP32 FP16", "GroupNormalization": _F, "GRU": _F,
    "HammingWindow": "FP32 FP16", "HannWindow": "FP32 FP16", "HardSigmoid": _F, "HardSwish": _F, "Hardmax": _F,
    "Identity": _FIB, "If": _FIB, "ImageScaler": _F, "InstanceNormalization": _F, "IsInf": _F, "IsNaN": _FI,
    "LayerNormalization": _F, "LeakyRelu": _F, "Less": _FI, "LessOrEqual": _FI, "Log": _F, "LogSoftmax": _F,
    "Loop": _FIB, "LRN": _F, "LSTM": _F, "LpNormalization": _F, "LpPool": _F, "MatMul": _F, "Max": _FI,
    "MaxPool": _F, "Mean": f"{_F} FP8 INT32 INT64", "MeanVarianceNormalization": _F, "Min": _FI, "Mish": "FP32 FP16",
    "Mod": _FI, "Mul": _FI, "Neg": _FI, "NonMaxSuppression": "FP32 FP16", "NonZero": "FP32 FP16", "Not": "BOOL",
    "OneHot": _FIB, "Or": "BOOL", "Pad": _FI, "ParametricSoftplus": _F, "Pow": _FI, "PRelu": _F,
    "QuantizeLinear": _F, "RandomNormal": _F, "RandomNormalLike": _F, "RandomUniform": _F, "RandomUniformLike": _F,
    "Range": _FI, "Reciprocal": _F, "ReduceL1": _FI, "ReduceL2": _FI, "ReduceLogSum": _FI, "ReduceLogSumExp": _FI,
    "ReduceMax": _FI, "ReduceMean": _FI, "ReduceMin": _FI, "ReduceProd": _FI, "ReduceSum": _FI,
    "ReduceSumSquare": _FI, "Relu": _FI, "Reshape": _FIB, "Resize": _F, "ReverseSequence": _FIB,
    "RMSNormalization": _F, "RNN": _F, "RoiAlign": "FP32 FP16", "RotaryEmbedding": _F, "Round": _F, "STFT": "FP32",
    "ScaledTanh": _F, "Scan": _F, "Scatter": _FI, "ScatterElements": _FI, "ScatterND": _FI, "Selu": _F,
    "Shape": _FIB, "Shrink": _FI, "Sigmoid": _F, "Sign": _FI, "Sin": _F, "Sinh": _F, "Size": _FIB, "Slice": _FIB,
    "Softmax": _F, "Softplus": _F, "Softsign": _F, "SpaceToDepth": _FI, "Split": _FIB, "Sqrt": _F, "Squeeze": _FIB,
    "Sub": _FI, "Sum": _FI, "Tan": _F, "Tanh": _F, "TensorScatter": f"{_F} INT32", "ThresholdedRelu": _F,
    "Tile": _FIB, "TopK": _FI, "Transpose": _FIB, "Trilu": _FIB, "Unsqueeze": _FIB, "Upsample": _F, "Where": _FIB,
    "Xor": "BOOL",
}  # fmt: skip
# Operators the parser gained after 10.0 (onnx-tensorrt Changelog.md; DFT: TensorRT 11.2 release notes).
ADDED_IN: dict[str, tuple[int, int]] = {
    "DeformConv": (10, 1), "BlackmanWindow": (10, 4), "HammingWindow": (10, 4), "HannWindow": (10, 4),
    "STFT": (10, 5), "Attention": (10, 14), "RMSNormalization": (10, 15), "RotaryEmbedding": (10, 15),
    "TensorScatter": (10, 15), "DFT": (11, 2),
}  # fmt: skip
# Newest default-domain opset each release was built against: ONNX 1.14 (opset 19) since 9.0, 1.17 (22) since 10.6,
# 1.18 (23) since 10.11 (Changelog.md), 24 in operators.md for 10.15, 25 from 11.5 (release notes). A newer opset
# is a warning: the parser still imports the ops whose definition did not change.
MAX_OPSET = [((10, 0), 19), ((10, 6), 22), ((10, 11), 23), ((10, 15), 24), ((11, 5), 25)]
ONNX_TYPES = {
    "FP32": "FLOAT", "FP16": "FLOAT16", "BF16": "BFLOAT16", "INT32": "INT32", "INT64": "INT64", "INT8": "INT8",
    "UINT8": "UINT8", "BOOL": "BOOL", "FP8": "FLOAT8E4M3FN", "FP4": "FLOAT4E2M1", "INT4": "INT4",
}  # fmt: skip
# Inputs whose values TensorRT needs at build time (parser restrictions); position -> what it is.
CONSTANT_INPUTS = {"CumSum": {1: "axis"}, "OneHot": {1: "depth"}, "TopK": {1: "K"}}
CONSTANT_INPUTS.update({op: {1: "axes"} for op in SUPPORTED_TYPES if op.startswith("Reduce")})
# Operand positions that make a graph input a shape tensor (its values, not just its dims, shape the network).
SHAPE_OPERANDS = {"Reshape": 1, "Expand": 1, "Tile": 1, "ConstantOfShape": 0, "Resize": 3}
QUANTIZED_OUTPUTS = {"INT8", "FLOAT8E4M3FN", "FLOAT4E2M1", "INT4"}


def parse_trt_version(text: str) -> tuple[int, int]:
    """'10.3', '10.3.0' or '10.16.1.11' -> (major, minor); refused below the oldest release we build with."""
    parts = str(text).strip().split(".")
    try:
        version = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    except ValueError as error:
        raise ConfigError(f"TensorRT version must look like 10.3 or 11.0, got {text!r}") from error
    if version < MIN_TRT_VERSION:
        raise ConfigError(f"gptdeploy builds engines for TensorRT >= 10.0 (JetPack 6 and later), got {text}")
    return version


def max_opset(version: tuple[int, int]) -> int:
    return max(opset for since, opset in MAX_OPSET if version >= since)


def supported_ops(version: tuple[int, int]) -> dict[str, set[str]]:
    """op type -> ONNX type names TensorRT `version` imports it with."""
    return {op: {ONNX_TYPES[t] for t in types.split()} for op, types in SUPPORTED_TYPES.items()
            if version >= ADDED_IN.get(op, MIN_TRT_VERSION)}  # fmt: skip
