"""Checkpoint -> verified bundle: export the graph, record golden references, check parity, write the manifest.

Everything is built in a temporary folder next to the destination and moved into place only when parity passed,
so a failed or interrupted export never leaves a bundle behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.bundle import GOLDEN_FILE, TOKENIZER_FILE, Artifact, sha256_file, write_manifest
from gptdeploy.checkpoint import load_checkpoint
from gptdeploy.errors import ExportError
from gptdeploy.evaluate import exact_match
from gptdeploy.export.genai_config import write_genai_config
from gptdeploy.export.onnx_export import export_onnx, input_names, output_names
from gptdeploy.golden import compute_golden, save_golden
from gptdeploy.parity import ParityReport, check_parity
from gptdeploy.runtimes.ort_runtime import OrtRuntime
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from gptdeploy.tasks import SHIPPED_TASKS, generate_tasks

logger = logging.getLogger(__name__)
GRAPH = "decoder/model.onnx"


@dataclass(frozen=True)
class ExportResult:
    bundle: Path
    artifact: Artifact
    parity: ParityReport
    accuracy: dict[str, float] | None  # held-out exact match per backend, when measured


@contextmanager
def quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (missing torchvision, deprecations, axis renames) that users cannot act on."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        exporter_log.setLevel(level)


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"gptdeploy": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}  # fmt: skip


def export_bundle(
    checkpoint: str | Path, bundle: str | Path, opset: int = 18, force: bool = False, tasks: bool | None = None
) -> ExportResult:
    """Export `checkpoint` to an fp32 ONNX bundle; raises ExportError (leaving nothing) if parity fails.

    `tasks` also requires identical held-out task accuracy on both backends; by default it is checked for models
    fine-tuned on the shipped tasks, where the accuracy means something.
    """
    bundle = Path(bundle)
    if bundle.exists() and not force:
        raise ExportError(f"{bundle} already exists; pass --force to replace it or choose another -o")
    loaded = load_checkpoint(checkpoint)
    if tasks is None:
        tasks = loaded.info.get("tasks") == SHIPPED_TASKS
    staging = bundle.parent / f".{bundle.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        result = _build(loaded, staging, opset, tasks)
        if bundle.exists():
            shutil.rmtree(bundle)
        os.replace(staging, bundle)
        return ExportResult(bundle, result.artifact, result.parity, result.accuracy)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build(loaded, staging: Path, opset: int, tasks: bool) -> ExportResult:
    model, tokenizer, config = loaded.model, loaded.tokenizer, loaded.config
    tokenizer.save(staging / TOKENIZER_FILE)
    logger.info("exporting the decoder graph (opset %d)", opset)
    with quiet_exporter():
        report = export_onnx(model, staging / GRAPH, opset=opset)
    write_genai_config(staging, config, tokenizer, GRAPH)
    logger.info("computing golden references with the PyTorch reference")
    reference = TorchRuntime(model, tokenizer)
    golden = compute_golden(reference)
    save_golden(staging / GOLDEN_FILE, golden)
    logger.info("checking ONNX Runtime fp32 against the reference")
    candidate = OrtRuntime(staging / GRAPH, config, tokenizer)
    parity = check_parity(candidate, golden)
    accuracy = None
    if tasks:
        heldout = generate_tasks()[1]
        accuracy = {
            "torch": exact_match(reference, heldout).accuracy,
            "onnxruntime": exact_match(candidate, heldout).accuracy,
        }
    files = {path.relative_to(staging).as_posix(): sha256_file(path) for path in map(Path, report.files)}
    details = {"op_counts": report.op_counts, "export_seconds": report.seconds, "parity": parity.to_dict(),
               "accuracy": accuracy, "source_checkpoint": str(loaded.path)}  # fmt: skip
    artifact = Artifact("onnx-fp32", "onnx", "fp32", GRAPH, files, report.opset, details)
    io = {"inputs": input_names(config.n_layer), "outputs": output_names(config.n_layer)}
    write_manifest(staging, config, io, [artifact], tool_versions())
    if not parity:
        raise ExportError(f"ONNX Runtime fp32 failed parity with the PyTorch reference: {'; '.join(parity.failures)}")
    if accuracy and accuracy["torch"] != accuracy["onnxruntime"]:
        raise ExportError(f"held-out accuracy differs: torch {accuracy['torch']:.1%}, ONNX Runtime "
                          f"{accuracy['onnxruntime']:.1%}")  # fmt: skip
    return ExportResult(staging, artifact, parity, accuracy)
