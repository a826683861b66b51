"""The one stage runner: every artifact of a bundle is made and registered here.

A `Stage` says what one step of the build makes: a pure file -> file transform (export, fusion, quantization,
TensorRT engine build) and what the result is called. `add_stage` does the rest once, for every stage: choose and
check the source artifact, refuse to replace an artifact without `force`, run the transform in a work folder inside
the bundle, judge the result on a runtime opened through `open_artifact` (parity against the golden references, and
held-out task accuracy when the bundle records PyTorch's) with the guardrail keeping layers in fp32 when a quantized
candidate misses its budget, then hash the files and register the artifact. A failure or interruption leaves the
bundle as it was.

`export_bundle` starts a bundle from a checkpoint: the tokenizer, golden references and the reference accuracy, then
the exported graph as its first stage.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.bundle import (
    GOLDEN_FILE,
    Artifact,
    ArtifactDetails,
    Bundle,
    Guardrail,
    add_artifact,
    artifact_folder,
    folder_files,
    load_bundle,
    staged_folder,
    write_manifest,
)
from gptdeploy.corpus.tasks import SHIPPED_TASKS, Example, generate_tasks
from gptdeploy.errors import ExportError
from gptdeploy.evaluate import exact_match
from gptdeploy.export.guardrail import Step, failure_message, search
from gptdeploy.export.op_counts import count_ops
from gptdeploy.golden import Golden, compute_golden, golden_prompts, load_golden, save_golden
from gptdeploy.graph_contract import DEFAULT_OPSET, ENGINE_FILE, GRAPH_FILE
from gptdeploy.parity import TOLERANCES, Tolerance, check_parity
from gptdeploy.runtimes.base import open_artifact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sweep:
    """How the guardrail may keep layers out of a quantization: the layer groups of a source graph, and the
    transform limited to the nodes of some groups."""

    layers: Callable[[Path], dict[str, list[str]]]  # source graph -> {"embeddings"|"lm_head"|"block.i": [node, ...]}
    transform: Callable[[Path, Path, list[str]], dict]  # (source, target, nodes to quantize) -> report


@dataclass(frozen=True)
class Stage:
    """One step of the build: a pure transform from a source artifact's file to a new file, and what it makes."""

    name: str  # the artifact it adds, e.g. "onnx-int8"
    kind: str  # of the result: "onnx" or "tensorrt"
    precision: str  # of the result; also picks the parity budget
    transform: Callable[[Path | None, Path], dict]  # (source file or None for the export, target) -> what it did
    recipe: dict  # the settings the manifest records (with the transform's report added)
    source_kind: str | None = "onnx"  # what it transforms; None: a checkpoint (the export), no source artifact
    source_precisions: tuple[str, ...] | None = ("fp32",)  # None: any
    sweep: Sweep | None = None  # quantization: the guardrail may keep sensitive layers in fp32
    marker_ops: tuple[str, ...] = ()  # a result holds at least one of these ops, else the transform did nothing
    device: str | None = None  # where the result is judged (None: its backend's default)
    label: str = ""  # how messages name it, e.g. "int8 (dynamic)"; default: the artifact name

    @property
    def folder(self) -> str:
        return artifact_folder(self.kind, self.name)

    @property
    def file(self) -> str:
        return ENGINE_FILE if self.kind == "tensorrt" else GRAPH_FILE


@dataclass(frozen=True)
class StageResult:
    bundle: Path
    artifact: Artifact
    steps: list[Step] = field(default_factory=list)  # what the guardrail measured; the last one was kept

    @property
    def parity(self):
        return self.steps[-1].parity


class Judge:
    """Measures a candidate file of a stage: parity on the bundle's golden references, and held-out accuracy
    against PyTorch's when `heldout` is given; one runtime per candidate, through `open_artifact`."""

    def __init__(self, bundle: Bundle, stage: Stage, tolerance: Tolerance, heldout: Sequence[Example] | None):
        if heldout is not None and bundle.reference_accuracy is None:
            raise ExportError(f"{bundle.path} records no PyTorch task accuracy (it is measured at export for models "
                              "tuned on the shipped tasks); re-export with --tasks, or pass --no-tasks")  # fmt: skip
        self.bundle, self.stage, self.tolerance, self.heldout = bundle, stage, tolerance, heldout
        self.golden: Golden = load_golden(bundle.file(GOLDEN_FILE))

    def __call__(self, candidate: Path, kept: list[str], tasks: bool = True) -> Step:
        relative = candidate.relative_to(self.bundle.path).as_posix()
        artifact = Artifact(self.stage.name, self.stage.kind, self.stage.precision, relative, {})
        with open_artifact(self.bundle, artifact, self.stage.device) as runtime:
            parity = check_parity(runtime, self.golden, self.tolerance)
            failures, accuracy = list(parity.failures), None
            if tasks and parity and self.heldout is not None:
                accuracy = exact_match(runtime, self.heldout).accuracy
                reference = self.bundle.reference_accuracy
                drop = 100 * (reference - accuracy)
                if drop > self.tolerance.max_accuracy_drop + 1e-9:
                    failures.append(f"task accuracy {accuracy:.1%} is {drop:.1f} points below PyTorch's "
                                    f"{reference:.1%} (budget {self.tolerance.max_accuracy_drop:g})")  # fmt: skip
        return Step(kept, parity, accuracy, failures)


def add_stage(
    bundle_dir: str | Path,
    stage: Stage,
    source: str | None = "onnx-fp32",
    force: bool = False,
    tasks: bool | None = None,
    tolerance: Tolerance | None = None,
    heldout: Sequence[Example] | None = None,
) -> StageResult:
    """Make `stage`'s artifact from the bundle's artifact `source` and register it if it meets its budget.

    `tasks` also holds held-out task accuracy to the budget (None: when the bundle records PyTorch's) on `heldout`
    (default: the shipped tasks' held-out set); `tolerance` overrides the precision's budget
    (gptdeploy.parity.TOLERANCES). Raises ExportError, leaving the bundle unchanged, when the request is bad or
    nothing meets the budget.
    """
    bundle = load_bundle(bundle_dir)
    origin = _source_artifact(bundle, stage, source)
    _refuse_replacing(bundle, stage, origin, force)
    if tasks is None:
        tasks = bundle.reference_accuracy is not None
    judge = Judge(bundle, stage, tolerance or TOLERANCES[stage.precision], task_examples(tasks, heldout))
    started = time.perf_counter()
    source_file = bundle.file(origin.path) if origin is not None else None
    logger.info("making %s from %s", stage.name, origin.name if origin is not None else "the checkpoint")
    with (
        staged_folder(bundle.path, stage.folder) as staging,
        tempfile.TemporaryDirectory(dir=bundle.path, prefix=".work-") as work,
    ):
        found = search(stage, source_file, Path(work), stage.file, judge)
        if not found.steps[-1]:
            raise ExportError(failure_message(stage.label or stage.name, found.steps))
        counts = _op_counts(found.file) if stage.kind == "onnx" else {}
        for path in found.file.parent.iterdir():
            path.replace(staging / path.name)
    files = folder_files(bundle.path, stage.folder)
    final = found.steps[-1]
    guardrail = None
    if stage.sweep is not None:
        guardrail = Guardrail(asdict(judge.tolerance), final.kept_fp32, found.sensitivity,
                              [step.to_dict() for step in found.steps])  # fmt: skip
    details = ArtifactDetails(
        source=origin.name if origin is not None else stage.recipe["checkpoint"],
        recipe={**stage.recipe, **found.report},
        parity=final.parity.to_dict(),
        task_accuracy=final.accuracy,
        guardrail=guardrail,
        op_counts=counts,
        size_bytes=sum(bundle.file(name).stat().st_size for name in files),
        seconds=round(time.perf_counter() - started, 1),
    )
    opset = _graph_opset(bundle.file(f"{stage.folder}/{stage.file}")) if stage.kind == "onnx" else None
    artifact = Artifact(stage.name, stage.kind, stage.precision, f"{stage.folder}/{stage.file}", files, opset, details)
    add_artifact(bundle.path, artifact, replace_existing=force)
    kept = f", {', '.join(final.kept_fp32)} kept in fp32" if final.kept_fp32 else ""
    logger.info("added %s: %s, %.2f MB%s", stage.name, final.summary(), details.size_bytes / 1e6, kept)
    return StageResult(bundle.path, artifact, found.steps)


def _source_artifact(bundle: Bundle, stage: Stage, source: str | None) -> Artifact | None:
    if stage.source_kind is None:
        return None
    origin = bundle.artifact(name=source)
    precisions = stage.source_precisions
    if origin.kind != stage.source_kind or (precisions is not None and origin.precision not in precisions):
        wanted = " or ".join(precisions or ("any",))
        raise ExportError(f"{stage.name} is made from {wanted} {stage.source_kind} artifacts; {source!r} is "
                          f"{origin.kind} {origin.precision}")  # fmt: skip
    return origin


def _refuse_replacing(bundle: Bundle, stage: Stage, origin: Artifact | None, force: bool) -> None:
    if origin is not None and origin.name == stage.name:
        raise ExportError(f"{stage.name!r} is the source artifact; choose another name for the new one")
    if any(artifact.name == stage.name for artifact in bundle.artifacts) and not force:
        raise ExportError(f"{bundle.path} already has an artifact {stage.name!r}; pass --force to replace it or "
                          "choose another name")  # fmt: skip
    for artifact in bundle.artifacts:
        if artifact.name != stage.name and any(file.startswith(f"{stage.folder}/") for file in artifact.files):
            raise ExportError(f"folder {stage.folder}/ belongs to artifact {artifact.name!r}; choose another name")


def _op_counts(file: Path) -> dict[str, int]:
    import onnx

    return count_ops(onnx.load(str(file), load_external_data=False).graph.node)


def _graph_opset(file: Path) -> int:
    import onnx

    model = onnx.load(str(file), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def task_examples(tasks: bool, heldout: Sequence[Example] | None) -> Sequence[Example] | None:
    """The held-out examples task accuracy is measured on: None when `tasks` is off, else `heldout` or, by default,
    the shipped tasks' held-out set."""
    if not tasks:
        return None
    return heldout if heldout is not None else generate_tasks()[1]


# --- the first stage: checkpoint -> bundle ------------------------------------------------------------------------


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"gptdeploy": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}  # fmt: skip


def export_stage(model, checkpoint: str, opset: int = DEFAULT_OPSET) -> Stage:
    """The reference model traced to the fp32 decoder graph: the stage every bundle starts with."""
    from gptdeploy.export.onnx_export import export_onnx

    def export(_source: None, target: Path) -> dict:
        return {"export_seconds": round(export_onnx(model, target, opset=opset).seconds, 1)}

    return Stage("onnx-fp32", "onnx", "fp32", export, {"checkpoint": checkpoint, "opset": opset}, source_kind=None)


def export_bundle(
    checkpoint: str | Path,
    bundle: str | Path,
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    tasks: bool | None = None,
    heldout: Sequence[Example] | None = None,
    prompts: Sequence[str] | None = None,
) -> StageResult:
    """Export `checkpoint` to a bundle; raises ExportError (leaving nothing) if ONNX Runtime misses fp32 parity.

    With `tasks` (None: when the checkpoint was tuned on the shipped tasks), PyTorch's exact match on `heldout`
    (default: the shipped held-out set) is recorded as the reference every artifact is held to, and the exported
    graph must reach it exactly. The golden references continue `prompts` (default: `golden_prompts` of the shipped
    held-out set and corpus).
    """
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.export.genai_config import write_bundle_genai_config
    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    bundle = Path(bundle)
    if bundle.exists() and not force:
        raise ExportError(f"{bundle} already exists; pass --force to replace it or choose another -o")
    loaded = load_checkpoint(checkpoint)
    heldout = task_examples(loaded.info.get("tasks") == SHIPPED_TASKS if tasks is None else tasks, heldout)
    if prompts is None:
        from gptdeploy.corpus.world import generate_corpus

        prompts = golden_prompts(heldout or generate_tasks()[1], generate_corpus().documents)
    staging = bundle.parent / f".{bundle.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir(parents=True)
    try:
        loaded.tokenizer.save(staging)
        logger.info("computing golden references with the PyTorch reference")
        with TorchRuntime(loaded.model, loaded.tokenizer) as reference:
            save_golden(staging / GOLDEN_FILE, compute_golden(reference, prompts))
            accuracy = exact_match(reference, heldout).accuracy if heldout is not None else None
        write_manifest(staging, loaded.config, tool_versions(),
                       {"checkpoint": str(loaded.path), "task_accuracy": accuracy})  # fmt: skip
        stage = export_stage(loaded.model, str(loaded.path), opset)
        result = add_stage(staging, stage, None, tasks=heldout is not None, heldout=heldout)
        write_bundle_genai_config(staging, result.artifact.name)
        if bundle.exists():
            shutil.rmtree(bundle)
        os.replace(staging, bundle)
        return StageResult(bundle, result.artifact, result.steps)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
