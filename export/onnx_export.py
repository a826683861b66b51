"""Export the reference `GPT` to one ONNX decoder graph that serves both prefill and decode.

The graph's IO (names, shapes, dynamic axes) is the contract in `gptdeploy/graph_contract.py`, which every runtime
reads too; this module only traces the model into that form.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gptdeploy.errors import ExportError
from gptdeploy.export.op_counts import count_ops
from gptdeploy.graph_contract import (
    ATTENTION_MASK,
    BATCH_DIM,
    DEFAULT_OPSET,
    PARAMETERS_KEY,
    PAST_DIM,
    SEQUENCE_DIM,
    TOTAL_DIM,
    encoder_input_names,
    encoder_output_names,
    input_names,
    output_names,
)
from gptdeploy.model import GPT

logger = logging.getLogger(__name__)

# Sample sizes the graph is traced with: all >= 2 and distinct from each other and from the head counts, so
# torch.export neither specializes a dynamic axis to 0 or 1 nor ties two axes together by coincidence.
_TRACE_BATCH, _TRACE_SEQUENCE, _TRACE_PAST = 3, 5, 7


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote, for logs and the bundle manifest."""

    files: tuple[Path, ...]  # the .onnx graph first, then its external weights file
    opset: int
    op_counts: dict[str, int]  # ONNX op type -> nodes of that type in the main graph, most frequent first
    seconds: float

    @property
    def model_path(self) -> Path:
        return self.files[0]

    @property
    def data_path(self) -> Path:
        return self.files[1]


class _DecoderGraph(nn.Module):
    """The model behind a flat, named signature: the exporter names graph inputs after forward's arguments.

    The past travels as one list argument (no varargs) so `dynamic_shapes` can describe it as a nested structure.
    """

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        position_ids: Tensor,
        past_key_values: list[tuple[Tensor, Tensor]],
    ) -> tuple[Tensor, ...]:
        logits, present = self.model(input_ids, list(past_key_values), attention_mask, position_ids)
        return (logits, *(tensor for key_value in present for tensor in key_value))


def _sample_inputs(model: GPT) -> tuple[Tensor, Tensor, Tensor, list[tuple[Tensor, Tensor]]]:
    config = model.config
    B, S, P = _TRACE_BATCH, _TRACE_SEQUENCE, _TRACE_PAST
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, config.vocab_size, (B, S), generator=generator)
    attention_mask = torch.ones(B, P + S, dtype=torch.long)
    position_ids = torch.arange(P, P + S).expand(B, S).contiguous()
    cache_shape = (B, config.kv_heads, P, config.head_dim)
    past = [(torch.zeros(cache_shape), torch.zeros(cache_shape)) for _ in range(config.n_layer)]
    return input_ids, attention_mask, position_ids, past


def _dynamic_shapes(n_layer: int) -> dict[str, object]:
    """Dynamic axes in the structure of forward's arguments (the past as a list of (key, value) pairs).

    Named `Dim`s give the graph's symbolic dims their names. The mask's length is past + sequence, a sum of two dims
    that `Dim` cannot express, so it is left to `Dim.AUTO` and renamed after export.
    """
    Dim = torch.export.Dim
    batch, sequence, past = Dim(BATCH_DIM, min=1), Dim(SEQUENCE_DIM, min=1), Dim(PAST_DIM, min=0)
    cache_axes = {0: batch, 2: past}
    return {
        "input_ids": {0: batch, 1: sequence},
        "attention_mask": {0: batch, 1: Dim.AUTO},
        "position_ids": {0: batch, 1: sequence},
        "past_key_values": [(cache_axes, cache_axes) for _ in range(n_layer)],
    }


def _record_parameters(onnx_program: torch.onnx.ONNXProgram, model: GPT) -> None:
    """Say in the graph which initializer holds each model parameter, as it is stored or transposed.

    The exporter folds constant transposes into new, numbered initializers and shares equal ones, so the names
    alone no longer say which weight is which; stages that rebuild the graph from its weights read this map (metadata
    key PARAMETERS_KEY: {parameter: [initializer, transposed]}). Values are matched exactly, so when two parameters
    hold the same values either initializer is the right one.
    """
    stored: dict[tuple, str] = {}
    for name, value in onnx_program.model.graph.initializers.items():
        array = value.const_value.numpy() if value.const_value is not None else None
        if array is not None and array.dtype == np.float32:
            stored.setdefault((array.shape, array.tobytes()), name)
    found = {}
    for name, parameter in model.named_parameters():
        array = parameter.detach().cpu().numpy()
        for transposed, candidate in ((False, array), (True, np.ascontiguousarray(array.T))):
            key = (candidate.shape, candidate.tobytes())
            if key in stored:
                found[name] = [stored[key], transposed]
                break
    onnx_program.model.metadata_props[PARAMETERS_KEY] = json.dumps(found)


def _tidy_graph(onnx_program: torch.onnx.ONNXProgram) -> None:
    """Name the mask's length like the present's, and drop per-node trace metadata.

    The metadata (stack traces with local paths, FX node dumps) is most of the .onnx file's size for small models
    and makes the artifact differ from machine to machine; it is only useful for debugging the exporter itself.
    """
    import onnx_ir as ir
    from onnx_ir.passes.common import ClearMetadataAndDocStringPass

    model = onnx_program.model
    ClearMetadataAndDocStringPass()(model)
    mask = next(value for value in model.graph.inputs if value.name == ATTENTION_MASK)
    old = mask.shape[1] if mask.shape is not None else None
    if not isinstance(old, ir.SymbolicDim) or old.value in (None, TOTAL_DIM, SEQUENCE_DIM):
        return  # already named, or an encoder's mask (as long as the sequence)
    values = [*model.graph.inputs, *model.graph.outputs, *(out for node in model.graph for out in node.outputs)]
    for value in values:
        if value.shape is not None and any(isinstance(d, ir.SymbolicDim) and d.value == old.value for d in value.shape):
            dims = [TOTAL_DIM if isinstance(d, ir.SymbolicDim) and d.value == old.value else d for d in value.shape]
            value.shape = ir.Shape(dims)


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter that users cannot act on: missing torchvision ops, torch.export's own
    deprecations, and one warning per input that the batch axis name is taken (every input shares it)."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used")
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        exporter_log.setLevel(level)


def _export_model(model: GPT) -> GPT:
    """The model to trace: the caller's own if it is fp32 on CPU, else a converted copy (the caller's is untouched).

    The graph's contract is fp32; lower precision is a later step of the build (fusion, quantization, TensorRT).
    """
    params = list(model.parameters())
    if all(p.dtype == torch.float32 and p.device.type == "cpu" for p in params):
        return model
    logger.info("exporting a float32 CPU copy of the model")
    return copy.deepcopy(model).float().cpu()


def export_onnx(model: GPT, path: Path, opset: int = DEFAULT_OPSET) -> ExportReport:
    """Write `model` to `path` as one prefill + decode graph, with its weights in `<path>.data` next to it.

    Both files are first written under a temporary folder beside `path` and renamed into place at the end, so a
    failed export leaves no half-written file behind (and any earlier export at `path` as it was).
    """
    n_layer = model.config.n_layer
    graph = _GraphSpec(_DecoderGraph, _sample_inputs, _dynamic_shapes(n_layer), input_names(n_layer),
                       output_names(n_layer), "a prefill + decode graph")  # fmt: skip
    return _export(model, path, opset, graph)


def export_encoder_onnx(model: GPT, path: Path, opset: int = DEFAULT_OPSET) -> ExportReport:
    """Write an encoder (a model with bidirectional attention) to `path` as one graph without a KV cache:
    (input_ids, attention_mask) -> logits and, with a classification head, class_scores. Written like
    `export_onnx`."""
    if model.config.causal:
        raise ExportError("export_encoder_onnx exports encoders; this model is causal (use export_onnx)")
    Dim = torch.export.Dim
    batch, sequence = Dim(BATCH_DIM, min=1), Dim(SEQUENCE_DIM, min=1)
    shapes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    graph = _GraphSpec(_EncoderGraph, _encoder_sample_inputs, shapes, encoder_input_names(),
                       encoder_output_names(model.config.num_labels), "an encoder graph")  # fmt: skip
    return _export(model, path, opset, graph)


class _EncoderGraph(nn.Module):
    """An encoder behind the graph's named signature: one pass, no cache."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
        logits, scores = self.model.encode(input_ids, attention_mask)
        return (logits,) if scores is None else (logits, scores)


def _encoder_sample_inputs(model: GPT) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, model.config.vocab_size, (_TRACE_BATCH, _TRACE_SEQUENCE), generator=generator)
    attention_mask = torch.ones(_TRACE_BATCH, _TRACE_SEQUENCE, dtype=torch.long)
    attention_mask[0, -2:] = 0  # a padded row, so the mask cannot be folded away as all ones
    return input_ids, attention_mask


@dataclass(frozen=True)
class _GraphSpec:
    """What one kind of graph needs from the exporter: the wrapper module, sample inputs and the declared IO."""

    wrapper: type[nn.Module]
    sample_inputs: object  # (model) -> the tuple of sample arguments
    dynamic_shapes: dict
    input_names: list[str]
    output_names: list[str]
    description: str


def _export(model: GPT, path: Path, opset: int, graph: _GraphSpec) -> ExportReport:
    path = Path(path)
    start = time.perf_counter()
    source = _export_model(model)
    config = source.config
    logger.info("exporting %d-layer GPT (%d parameters) to %s as %s at opset %d", config.n_layer,
                source.num_parameters(), path, graph.description, opset)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    was_training = source.training
    try:
        source.eval()
        with quiet_exporter():
            onnx_program = torch.onnx.export(
                graph.wrapper(source).eval(),
                graph.sample_inputs(source),
                dynamo=True,
                dynamic_shapes=graph.dynamic_shapes,
                input_names=graph.input_names,
                output_names=graph.output_names,
                opset_version=opset,
                optimize=True,
                verbose=False,  # the exporter prints its progress otherwise; this module logs instead
            )
        logger.info("traced and converted to ONNX in %.1f s", time.perf_counter() - start)
        _tidy_graph(onnx_program)
        _record_parameters(onnx_program, source)
        op_counts = count_ops(onnx_program.model.graph)
        # The external data file is named after the destination (`model.onnx` -> `model.onnx.data`) and the graph
        # refers to it by that name, so the temporary files carry the final names inside the temporary folder.
        staged_model, staged_data = workdir / path.name, workdir / f"{path.name}.data"
        onnx_program.save(staged_model, external_data=True)
        if not staged_data.is_file():
            raise ExportError(f"the exporter did not write the external data file {staged_data.name}")
        data_path = path.with_name(staged_data.name)
        os.replace(staged_data, data_path)  # weights first: a graph in place always finds its weights
        os.replace(staged_model, path)
    finally:
        source.train(was_training)
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.perf_counter() - start
    logger.info(
        "wrote %s (%d bytes) and %s (%d bytes) in %.1f s: %d nodes",
        path.name,
        path.stat().st_size,
        data_path.name,
        data_path.stat().st_size,
        seconds,
        sum(op_counts.values()),
    )
    return ExportReport(files=(path, data_path), opset=opset, op_counts=op_counts, seconds=seconds)
