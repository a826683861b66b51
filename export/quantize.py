"""Quantized variants of a bundle's fp32 graph, each accepted only within its precision's budget.

Four schemes, all made by ONNX Runtime's own tools (`quantize_transforms.py`) and all running on its CPU provider:
  int8         dynamic: int8 weights per output channel, activations quantized at run time (DynamicQuantizeLinear +
               MatMulInteger), int8 embedding tables
  int8-static  explicit QuantizeLinear/DequantizeLinear (QDQ) on every weight MatMul, symmetric int8, activation
               ranges calibrated on corpus text: the form TensorRT 10/11 builds int8 engines from
  fp16         fp16 weights and matmuls, fp32 islands where fp16 overflows or loses too much (norms, softmax,
               residual adds, powers), graph IO in fp32 or fp16
  int4         weight-only, block-wise (MatMulNBits; GatherBlockQuantized for the embedding tables)

The guardrail (`guardrail.py`, run by the stage runner) judges every candidate; for int8, int8-static and int4 it
keeps the most sensitive layers in fp32 until a candidate meets the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gptdeploy.bundle import load_bundle
from gptdeploy.config import GPTConfig
from gptdeploy.corpus.tasks import Example
from gptdeploy.errors import ExportError
from gptdeploy.export.pipeline import Stage, StageResult, Sweep, add_stage
from gptdeploy.parity import Tolerance
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.validation import checked_arguments

CALIBRATION_SAMPLES = 64  # documents the static int8 ranges are calibrated on
CALIBRATION_TOKENS = 128  # at most this many tokens of each


@dataclass(frozen=True)
class Scheme:
    """One quantization, as the CLI, the stage runner and the manifest know it."""

    precision: str  # the artifact's precision (its parity budget)
    scheme: str  # the recipe's name for it
    transform: str  # the function of quantize_transforms that makes it: (source, target, nodes) -> report
    markers: tuple[str, ...]  # a graph of this scheme holds at least one of these ops
    sweep_embeddings: bool | None  # the guardrail's layers include the embedding tables; None: no layer sweep
    recipe: dict  # settings the manifest records


SCHEMES = {
    "int8": Scheme("int8", "dynamic", "quantize_int8_dynamic", ("MatMulInteger", "DequantizeLinear"), True,
                   {"per_channel": True}),
    "int8-static": Scheme("int8", "static-qdq", "quantize_int8_static", ("QuantizeLinear",), False,
                          {"calibration": {"samples": CALIBRATION_SAMPLES, "max_tokens": CALIBRATION_TOKENS,
                                           "method": "MinMax", "symmetric": True}}),
    "fp16": Scheme("fp16", "fp16-mixed", "convert_fp16", ("Cast",), None, {}),
    "int4": Scheme("int4", "weight-only-int4", "quantize_int4",
                   ("com.microsoft::MatMulNBits", "com.microsoft::GatherBlockQuantized"), True,
                   {"symmetric": True}),
}  # fmt: skip


def quantization_stage(
    precision: str,
    config: GPTConfig,
    tokenizer: Tokenizer,
    name: str | None = None,
    io_dtype: str = "fp32",
    calibration_texts: Sequence[str] = (),
) -> Stage:
    """The stage that adds the `precision` variant (a SCHEMES key) as artifact `name` (default onnx-<precision>).

    `io_dtype` fp16 also halves the fp16 graph's logits and KV cache; `calibration_texts` are what int8-static
    calibrates its activation ranges on (documents the model was trained on, never the golden references).
    """
    from gptdeploy.export import quantize_transforms as transforms

    if precision not in SCHEMES:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(SCHEMES)}")
    if io_dtype not in ("fp32", "fp16"):
        raise ExportError(f"--io-dtype must be fp32 or fp16, got {io_dtype!r}")
    if io_dtype == "fp16" and precision != "fp16":
        raise ExportError(f"--io-dtype fp16 applies to --precision fp16 only; {precision} graphs keep fp32 IO")
    if precision == "int8-static" and not config.causal:
        raise ExportError("int8-static calibrates on a decoder's inputs; for an encoder choose int8, fp16 or int4")
    scheme = SCHEMES[precision]
    transform: Callable[..., dict] = getattr(transforms, scheme.transform)
    recipe = {"scheme": scheme.scheme, **scheme.recipe}
    if precision == "int8-static":
        if not calibration_texts:
            raise ExportError("int8-static needs calibration texts (documents the model was trained on)")
        transform = partial(transform, reader=partial(calibration_reader, config, tokenizer, calibration_texts))
    if precision == "fp16":
        transform = partial(transform, io_dtype=io_dtype)
        recipe |= {"io_dtype": io_dtype, "fp32_ops": [*transforms.FP32_OPS, "residual Add"]}
    if precision == "int4":
        recipe |= {"block_size": transforms.INT4_BLOCK_SIZE, "accuracy_level": transforms.INT4_ACCURACY_LEVEL}
    sweep = None
    if scheme.sweep_embeddings is not None:
        layers = partial(transforms.layer_groups_of, n_layer=config.n_layer, embeddings=scheme.sweep_embeddings)
        sweep = Sweep(layers, transform)
    return Stage(name or f"onnx-{precision}", "onnx", scheme.precision, transform, recipe, sweep=sweep,
                 marker_ops=scheme.markers, label=f"{scheme.precision} ({scheme.scheme})")  # fmt: skip


def calibration_reader(config: GPTConfig, tokenizer: Tokenizer, texts: Sequence[str]):
    from gptdeploy.export.calibration import CorpusCalibrationReader

    return CorpusCalibrationReader(config, tokenizer, texts, CALIBRATION_TOKENS)


def calibration_texts(documents: Sequence[str], samples: int = CALIBRATION_SAMPLES) -> list[str]:
    from gptdeploy.export.calibration import sample_training_documents

    return sample_training_documents(documents, samples)


@checked_arguments(ExportError)
def quantize_bundle(
    bundle: str | Path,
    precision: str,
    source: str = "onnx-fp32",
    name: str | None = None,
    io_dtype: str = "fp32",
    force: bool = False,
    tasks: bool | None = None,
    tolerance: Tolerance | None = None,
    calibration: Sequence[str] | None = None,
    heldout: Sequence[Example] | None = None,
) -> StageResult:
    """Add the `precision` variant of `source` to the bundle, only within its budget (`tolerance` overrides it).

    int8-static calibrates on `calibration` (default: training documents of the shipped corpus); task accuracy is
    measured on `heldout` (default: the shipped held-out set).
    """
    opened = load_bundle(bundle, verify=False)  # add_stage verifies it; this only reads the model and tokenizer
    if precision == "int8-static" and calibration is None:
        from gptdeploy.corpus.world import generate_corpus

        calibration = calibration_texts(generate_corpus().documents)
    stage = quantization_stage(precision, opened.config, Tokenizer.load(opened.path), name, io_dtype, calibration or ())
    return add_stage(bundle, stage, source, force, tasks, tolerance, heldout)
