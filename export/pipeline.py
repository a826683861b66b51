"""The one stage runner: every artifact of a bundle is made and registered here.

A `Stage` says what one step of the build makes: a pure file -> file transform (export, fusion, quantization,
TensorRT engine build) and what the result is called. `add_stage` does the rest once, for every stage: choose and
check the source artifact, refuse to replace an artifact without `force`, run the transform in a work folder inside
the bundle, judge the result on a runtime opened through `open_artifact` (parity against the golden references, and
held-out task accuracy when the bundle records PyTorch's) with the guardrail keeping layers in fp32 when a quantized
candidate misses its budget, then hash the files and register the artifact. It holds the bundle's writer lock
throughout. A failure or interruption leaves the bundle as it was; a replaced artifact stays valid until the
manifest names its successor (`gptdeploy.bundle.install_artifact`).

`export_bundle` starts a bundle from a checkpoint: the tokenizer, golden references and the reference accuracy, then
the exported graph as its first stage, all built in a hidden folder next to the bundle that then takes its place in
one atomic swap (`gptdeploy.fileio.replace_folder`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gptdeploy import __version__
from gptdeploy.bundle import (
    GOLDEN_FILE,
    Artifact,
    ArtifactDetails,
    Bundle,
    Guardrail,
    load_bundle,
    write_manifest,
)
from gptdeploy.bundle_write import WORK_PREFIX, install_artifact, staged_folder, writing
from gptdeploy.corpus.tasks import SHIPPED_TASKS, Example, generate_tasks
from gptdeploy.encoder_golden import (
    EncoderGolden,
    check_encoder_parity,
    compute_encoder_golden,
    encoder_golden_texts,
    load_encoder_golden,
    save_encoder_golden,
)
from gptdeploy.errors import ExportError, GptDeployError
from gptdeploy.evaluate import exact_match
from gptdeploy.export.genai_config import write_genai_files
from gptdeploy.export.guardrail import Step, failure_message, search
from gptdeploy.export.op_counts import count_ops
from gptdeploy.fileio import crash_point, folder_lock, replace_folder, staging_folder
from gptdeploy.golden import Golden, compute_golden, golden_prompts, load_golden, save_golden
from gptdeploy.graph_contract import DEFAULT_OPSET, ENGINE_FILE, GRAPH_FILE
from gptdeploy.parity import TOLERANCES, Tolerance, check_parity
from gptdeploy.paths import check_name
from gptdeploy.runtimes.base import open_artifact, open_encoder
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.validation import checked_arguments

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
        self.encoder = not bundle.config.causal
        if self.encoder and heldout is not None:
            raise ExportError("task accuracy is measured on the shipped generation tasks, which an encoder does not "
                              "do; pass --no-tasks")  # fmt: skip
        load = load_encoder_golden if self.encoder else load_golden
        self.golden: Golden | EncoderGolden = load(bundle.file(GOLDEN_FILE))

    def __call__(self, candidate: Path, kept: list[str], tasks: bool = True) -> Step:
        relative = candidate.relative_to(self.bundle.path).as_posix()
        artifact = Artifact(self.stage.name, self.stage.kind, self.stage.precision, relative, {})
        if self.encoder:
            with open_encoder(self.bundle, artifact, self.stage.device) as encoder:
                parity = check_encoder_parity(encoder, self.golden, self.tolerance)
            return Step(kept, parity, None, list(parity.failures))
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
    check_name(stage.name, ExportError)
    with writing(bundle_dir):
        bundle = load_bundle(bundle_dir)
        origin = _source_artifact(bundle, stage, source)
        _refuse_replacing(bundle, stage, origin, force)
        if tasks is None:
            tasks = bundle.reference_accuracy is not None
        judge = Judge(bundle, stage, tolerance or TOLERANCES[stage.precision], task_examples(tasks, heldout))
        started = time.perf_counter()
        source_file = bundle.file(origin.path) if origin is not None else None
        logger.info("making %s from %s", stage.name, origin.name if origin is not None else "the checkpoint")
        with staged_folder(bundle.path) as staging:
            with tempfile.TemporaryDirectory(dir=bundle.path, prefix=WORK_PREFIX) as work:
                found = _search(stage, source_file, Path(work), judge)
                if not found.steps[-1]:
                    raise ExportError(failure_message(stage.label or stage.name, found.steps))
                for path in found.file.parent.iterdir():
                    path.replace(staging / path.name)
                if stage.kind == "onnx":
                    write_genai_files(staging, bundle.config, Tokenizer.load(bundle.path))
                crash_point(f"staged {stage.name}")
            artifact = _describe(stage, origin, staging, found, judge, time.perf_counter() - started)
            artifact = install_artifact(bundle.path, staging, artifact, replace_existing=force)
    final = found.steps[-1]
    kept = f", {', '.join(final.kept_fp32)} kept in fp32" if final.kept_fp32 else ""
    logger.info("added %s: %s, %.2f MB%s", stage.name, final.summary(), artifact.details.size_bytes / 1e6, kept)
    return StageResult(bundle.path, artifact, found.steps)


def _search(stage: Stage, source_file: Path | None, work: Path, judge: Judge):
    """The guardrail's search, with failures of the libraries the transform uses (onnx, onnx_ir, onnxscript, ONNX
    Runtime's quantizers, TensorRT) reported as what they are: this stage could not transform this source."""
    try:
        return search(stage, source_file, work, stage.file, judge)
    except GptDeployError:
        raise
    except Exception as error:  # a foreign library failing on the graph it was given
        what = source_file.name if source_file is not None else "the checkpoint"
        message = f"{type(error).__name__}: {error}".replace("\n", " ")[:500]
        raise ExportError(f"{stage.label or stage.name} could not be made from {what} ({message}); the source is not "
                          "a graph gptdeploy exported: re-export the bundle") from error  # fmt: skip


def _describe(stage: Stage, origin: Artifact | None, staging: Path, found, judge: Judge, seconds: float) -> Artifact:
    """The artifact as the manifest will record it, its files still in the staging folder."""
    final = found.steps[-1]
    guardrail = None
    if stage.sweep is not None:
        guardrail = Guardrail(asdict(judge.tolerance), final.kept_fp32, found.sensitivity,
                              [step.to_dict() for step in found.steps])  # fmt: skip
    onnx_graph = staging / stage.file if stage.kind == "onnx" else None
    details = ArtifactDetails(
        source=origin.name if origin is not None else stage.recipe["checkpoint"],
        recipe={**stage.recipe, **found.report},
        parity=final.parity.to_dict(),
        task_accuracy=final.accuracy,
        guardrail=guardrail,
        op_counts=_op_counts(onnx_graph) if onnx_graph is not None else {},
        size_bytes=sum(path.stat().st_size for path in staging.rglob("*") if path.is_file()),
        seconds=round(seconds, 1),
    )
    opset = _graph_opset(onnx_graph) if onnx_graph is not None else None
    return Artifact(stage.name, stage.kind, stage.precision, stage.file, {}, opset, details)


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


def encoder_export_stage(model, checkpoint: str, opset: int = DEFAULT_OPSET) -> Stage:
    """An encoder traced to its fp32 graph (no cache): the first stage of an encoder's bundle."""
    from gptdeploy.export.onnx_export import export_encoder_onnx

    def export(_source: None, target: Path) -> dict:
        return {"export_seconds": round(export_encoder_onnx(model, target, opset=opset).seconds, 1)}

    recipe = {"checkpoint": checkpoint, "opset": opset, "graph": "encoder"}
    return Stage("onnx-fp32", "onnx", "fp32", export, recipe, source_kind=None)


@checked_arguments(ExportError)
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
    held-out set and corpus). With `force`, an existing bundle is replaced only once the new one is complete.
    """
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    bundle = Path(bundle)
    _check_target(Path(checkpoint), bundle, force)
    loaded = load_checkpoint(checkpoint)
    if not loaded.config.causal:
        if tasks:
            raise ExportError("task accuracy is measured on the shipped generation tasks, which an encoder does not "
                              "do; export it without --tasks")  # fmt: skip
        return _export_encoder_bundle(loaded, bundle, opset, force, prompts)
    heldout = task_examples(loaded.info.get("tasks") == SHIPPED_TASKS if tasks is None else tasks, heldout)
    if prompts is None:
        from gptdeploy.corpus.world import generate_corpus

        prompts = golden_prompts(heldout or generate_tasks()[1], generate_corpus().documents)
    with folder_lock(bundle, ExportError) if bundle.exists() else nullcontext(), staging_folder(bundle) as staging:
        loaded.tokenizer.save(staging)
        logger.info("computing golden references with the PyTorch reference")
        with TorchRuntime(loaded.model, loaded.tokenizer) as reference:
            save_golden(staging / GOLDEN_FILE, compute_golden(reference, prompts))
            accuracy = exact_match(reference, heldout).accuracy if heldout is not None else None
        write_manifest(staging, loaded.config, tool_versions(),
                       {"checkpoint": str(loaded.path), "task_accuracy": accuracy})  # fmt: skip
        stage = export_stage(loaded.model, str(loaded.path), opset)
        result = add_stage(staging, stage, None, tasks=heldout is not None, heldout=heldout)
        _place_bundle(staging, bundle, force)
    return StageResult(bundle, result.artifact, result.steps)


def _export_encoder_bundle(loaded, bundle: Path, opset: int, force: bool, texts: Sequence[str] | None) -> StageResult:
    """`export_bundle` for an encoder: golden references of fill-mask texts (and class scores), then its graph."""
    from gptdeploy.runtimes.torch_runtime import TorchEncoder

    if texts is None:
        from gptdeploy.corpus.genres import generate_genre_task

        texts = encoder_golden_texts([example.text for example in generate_genre_task()[1][::100]])
    labels = list(loaded.info.get("labels") or [])
    with folder_lock(bundle, ExportError) if bundle.exists() else nullcontext(), staging_folder(bundle) as staging:
        loaded.tokenizer.save(staging)
        logger.info("computing the encoder's golden references with the PyTorch reference")
        with TorchEncoder(loaded.model, loaded.tokenizer, labels) as reference:
            save_encoder_golden(staging / GOLDEN_FILE, compute_encoder_golden(reference, texts))
        write_manifest(staging, loaded.config, tool_versions(),
                       {"checkpoint": str(loaded.path), "task_accuracy": None, "labels": labels})  # fmt: skip
        result = add_stage(staging, encoder_export_stage(loaded.model, str(loaded.path), opset), None, tasks=False)
        _place_bundle(staging, bundle, force)
    return StageResult(bundle, result.artifact, result.steps)


def _place_bundle(staging: Path, bundle: Path, force: bool) -> None:
    """Swap the finished bundle into place, refusing one another process created meanwhile unless `force`."""
    if bundle.exists() and not force:
        raise ExportError(f"{bundle} was created while this export ran; pass --force to replace it")
    try:
        replace_folder(staging, bundle)
    except FileExistsError as error:
        raise ExportError(f"{bundle} was created while this export ran; export again with --force") from error


def _check_target(checkpoint: Path, bundle: Path, force: bool) -> None:
    """Refuse to replace a bundle without `force`, or ever to replace a folder that holds the checkpoint."""
    if bundle.exists() and not force:
        raise ExportError(f"{bundle} already exists; pass --force to replace it or choose another -o")
    if bundle.exists() and not bundle.is_dir():
        raise ExportError(f"{bundle} is a file, not a bundle folder; choose another -o")
    resolved = bundle.resolve()
    if resolved == checkpoint.resolve() or resolved in checkpoint.resolve().parents:
        raise ExportError(f"-o {bundle} holds the checkpoint {checkpoint}; replacing it would delete the checkpoint: "
                          "choose another -o")  # fmt: skip
