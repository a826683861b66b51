"""Quantized variants of a bundle's fp32 graph, each accepted only within its precision's budget.

Four schemes, all made by ONNX Runtime's own tools and all running on its CPU provider:
  int8         dynamic: int8 weights per output channel, activations quantized at run time (MatMulInteger), int8
               embedding tables
  int8-static  explicit QuantizeLinear/DequantizeLinear (QDQ) on every weight MatMul, symmetric int8, activation
               ranges calibrated on the shipped corpus: the form TensorRT 10/11 builds int8 engines from
  fp16         fp16 weights and matmuls, fp32 islands where fp16 overflows or loses too much (norms, softmax,
               residual adds, powers), graph IO in fp32 or fp16
  int4         weight-only, block-wise (MatMulNBits; GatherBlockQuantized for the embedding tables)
The graph transforms themselves are in `quantize_graphs.py`.

Guardrail: every candidate runs the parity harness against the bundle's golden references and, for models tuned on
the shipped tasks, held-out accuracy against the PyTorch accuracy recorded at export. When an int8 or int4 candidate
misses its budget, each layer's sensitivity is measured (only that layer quantized, KL against the reference) and
the most sensitive layers are kept in fp32, one more per step, until it passes. The manifest records every step and
what was kept; when nothing passes, the bundle is left as it was.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from gptdeploy.bundle import GOLDEN_FILE, TOKENIZER_FILE, Artifact, Bundle, add_artifact, folder_files, staged_folder
from gptdeploy.bundle import load_bundle as open_bundle
from gptdeploy.errors import ExportError
from gptdeploy.evaluate import exact_match
from gptdeploy.export.op_counts import count_ops
from gptdeploy.export.quantize_graphs import (
    FP32_OPS,
    GRAPH_FILE,
    INT4_ACCURACY_LEVEL,
    INT4_BLOCK_SIZE,
    convert_fp16,
    graph_opset,
    layer_groups,
    load_prepared,
    quantize_int4,
    quantize_int8_dynamic,
    quantize_int8_static,
)
from gptdeploy.golden import Golden, load_golden
from gptdeploy.parity import TOLERANCES, ParityReport, Tolerance, check_parity
from gptdeploy.tasks import generate_tasks
from gptdeploy.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scheme:
    precision: str  # the artifact's precision
    scheme: str  # details["scheme"]
    marker_ops: tuple[str, ...]  # ops (as count_ops names them) a graph of this scheme must contain
    sweep: bool  # the guardrail may keep sensitive layers in fp32
    embeddings: bool = False  # the embedding tables are quantized too (a layer the guardrail may keep)


SCHEMES = {
    "int8": Scheme("int8", "dynamic", ("DynamicQuantizeLinear", "MatMulInteger"), sweep=True, embeddings=True),
    "int8-static": Scheme("int8", "static-qdq", ("QuantizeLinear", "DequantizeLinear"), sweep=True),
    "fp16": Scheme("fp16", "fp16-mixed", ("Cast",), sweep=False),
    "int4": Scheme("int4", "weight-only-int4", ("com.microsoft::MatMulNBits",), sweep=True, embeddings=True),
}


@dataclass(frozen=True)
class QuantizeResult:
    bundle: Path
    artifact: Artifact
    parity: ParityReport
    accuracy: dict[str, float] | None  # {"torch": recorded at export, "onnxruntime": this artifact}
    kept_fp32: list[str]  # layers the guardrail kept in fp32
    steps: list[dict]  # the guardrail's measurements, in order


# --- the guardrail and the bundle ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One measured candidate: which layers it kept in fp32, its parity and task accuracy, and its verdict."""

    kept_fp32: list[str]
    parity: ParityReport
    accuracy: float | None
    failures: list[str]

    def __bool__(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        p = self.parity
        return {"kept_fp32": self.kept_fp32, "top1_agreement": p.top1_agreement, "mean_kl": p.mean_kl,
                "max_rel_logit_diff": p.max_rel_logit_diff, "greedy_identical": p.greedy_identical,
                "prompts": p.prompts, "accuracy": self.accuracy, "passed": bool(self),
                "failures": self.failures}  # fmt: skip

    def summary(self) -> str:
        p = self.parity
        text = f"top-1 {p.top1_agreement:.1%}, KL {p.mean_kl:.1e}, greedy {p.greedy_identical}/{p.prompts}"
        return text + (f", task accuracy {self.accuracy:.1%}" if self.accuracy is not None else "")


@dataclass
class _Job:
    """Everything one quantization run needs to build and judge candidates."""

    bundle: Bundle
    precision: str  # a SCHEMES key
    source: Path  # the fp32 graph
    io_dtype: str
    tolerance: Tolerance
    golden: Golden
    tokenizer: Tokenizer
    reference_accuracy: float | None  # PyTorch's held-out accuracy recorded at export, when checked
    workdir: Path

    @property
    def scheme(self) -> Scheme:
        return SCHEMES[self.precision]

    @property
    def label(self) -> str:
        return f"{self.scheme.precision} ({self.scheme.scheme})"

    def build(self, folder: str, nodes: list[str] | None = None) -> Path:
        """A candidate graph in its own work folder, quantizing `nodes` (default: every weight MatMul)."""
        target = self.workdir / folder / GRAPH_FILE
        target.parent.mkdir()
        if self.precision == "int8":
            return quantize_int8_dynamic(self.source, target, nodes)
        if self.precision == "int8-static":
            from gptdeploy.export.calibration import CorpusCalibrationReader

            def reader():
                return CorpusCalibrationReader(self.bundle.config, self.tokenizer)

            return quantize_int8_static(self.source, target, reader, nodes, self.workdir / "calibration.json")
        if self.precision == "int4":
            return quantize_int4(self.source, target, nodes)
        return convert_fp16(self.source, target, self.io_dtype)

    def measure(self, graph: Path, kept: list[str], tasks: bool = True) -> Step:
        """Parity against the golden references; task accuracy too when parity passed and the bundle records
        PyTorch's (skipped for failing candidates: they are rejected anyway)."""
        from gptdeploy.runtimes.ort_runtime import OrtRuntime, session_options

        config, tolerance = self.bundle.config, self.tolerance
        options = session_options(spinning=False)  # short runs, one after another: spinning threads only burn CPU
        with OrtRuntime(graph, config, self.tokenizer, "cpu", self.scheme.precision, options=options) as runtime:
            parity = check_parity(runtime, self.golden, tolerance)
            failures, accuracy = list(parity.failures), None
            if tasks and parity and self.reference_accuracy is not None:
                accuracy = exact_match(runtime, generate_tasks()[1]).accuracy
                drop = 100 * (self.reference_accuracy - accuracy)
                if drop > tolerance.max_accuracy_drop + 1e-9:
                    failures.append(
                        f"task accuracy {accuracy:.1%} is {drop:.1f} points below PyTorch's "
                        f"{self.reference_accuracy:.1%} (budget {tolerance.max_accuracy_drop:g})"
                    )
        return Step(kept, parity, accuracy, failures)


def _search(job: _Job) -> tuple[Path, list[Step], dict[str, float]]:
    """Quantize everything; if that misses the budget, keep the most sensitive layers in fp32, one more per step.

    Returns the last candidate, every step, and each layer's sensitivity (mean KL with only it quantized).
    """
    graph = job.build("step-0")
    steps = [job.measure(graph, [])]
    logger.info("%s: %s%s", job.label, steps[0].summary(), _verdict(steps[0]))
    scheme, n_layer = job.scheme, job.bundle.config.n_layer
    groups = layer_groups(load_prepared(job.source), n_layer, scheme.embeddings) if scheme.sweep else {}
    if steps[0] or len(groups) < 2:
        return graph, steps, {}
    logger.info("measuring the sensitivity of %d layers (each quantized alone)", len(groups))
    sensitivity = {}
    for name, nodes in groups.items():
        probe = job.build(f"probe-{name}", nodes)
        sensitivity[name] = job.measure(probe, [], tasks=False).parity.mean_kl
        _remove_graph(probe)
        logger.info("  %s alone: mean KL %.2e", name, sensitivity[name])
    order = sorted(groups, key=sensitivity.__getitem__, reverse=True)
    for count in range(1, len(order)):
        _remove_graph(graph)
        kept = order[:count]
        graph = job.build(f"step-{count}", [node for name in order[count:] for node in groups[name]])
        steps.append(job.measure(graph, kept))
        logger.info("guardrail step %d/%d, keeping %s in fp32: %s%s", count, len(order) - 1, ", ".join(kept),
                    steps[-1].summary(), _verdict(steps[-1]))  # fmt: skip
        if steps[-1]:
            break
    return graph, steps, sensitivity


def _verdict(step: Step) -> str:
    return " -> within budget" if step else " -> " + "; ".join(step.failures)


def _remove_graph(graph: Path) -> None:
    for path in graph.parent.iterdir():
        path.unlink()
    graph.parent.rmdir()


def _failure(job: _Job, steps: list[Step]) -> str:
    best = max(steps, key=lambda step: (step.parity.top1_agreement, -step.parity.mean_kl))
    message = f"{job.label} missed its budget: {'; '.join(steps[-1].failures)}"
    if len(steps) > 1:
        kept = ", ".join(best.kept_fp32) or "nothing"
        message += (f", even keeping {', '.join(steps[-1].kept_fp32)} in fp32; the best candidate (keeping {kept}) "
                    f"reached {best.summary()}")  # fmt: skip
    return message + "; the bundle is unchanged"


def _reference_accuracy(bundle: Bundle, origin: Artifact, tasks: bool | None) -> float | None:
    """PyTorch's held-out accuracy recorded at export (on the source artifact, else any artifact)."""
    if tasks is False:
        return None
    recorded = [a.details.get("accuracy") or {} for a in (origin, *bundle.artifacts)]
    accuracy = next((entry["torch"] for entry in recorded if entry.get("torch") is not None), None)
    if accuracy is None and tasks:
        raise ExportError(f"{bundle.path} records no PyTorch task accuracy (it is measured at export for models tuned "
                          "on the shipped tasks); re-export with --tasks or quantize with --no-tasks")  # fmt: skip
    return accuracy


def _check_request(bundle: Bundle, precision: str, source: str, name: str, io_dtype: str, force: bool) -> Artifact:
    """Refuse a bad request before anything is written; returns the source artifact."""
    if precision not in SCHEMES:
        raise ExportError(f"unknown precision {precision!r}; choose one of {', '.join(SCHEMES)}")
    if io_dtype not in ("fp32", "fp16"):
        raise ExportError(f"--io-dtype must be fp32 or fp16, got {io_dtype!r}")
    if io_dtype == "fp16" and precision != "fp16":
        raise ExportError(f"--io-dtype fp16 applies to --precision fp16 only; {precision} graphs keep fp32 IO")
    origin = bundle.artifact(name=source)
    if origin.kind != "onnx" or origin.precision != "fp32":
        raise ExportError(f"artifact {source!r} is {origin.kind} {origin.precision}; quantize from an fp32 ONNX "
                          "artifact such as onnx-fp32")  # fmt: skip
    if name == source:
        raise ExportError(f"--name {name!r} is the source artifact; choose another name")
    if any(artifact.name == name for artifact in bundle.artifacts) and not force:
        raise ExportError(f"{bundle.path} already has an artifact {name!r}; pass --force to replace it or choose "
                          "another --name")  # fmt: skip
    folder = artifact_folder(name)
    for artifact in bundle.artifacts:
        if artifact.name != name and any(file.startswith(f"{folder}/") for file in artifact.files):
            raise ExportError(f"folder {folder}/ belongs to artifact {artifact.name!r}; choose another --name")
    return origin


def artifact_folder(name: str) -> str:
    """Where an artifact's files live in the bundle: onnx-int8 -> decoder-int8/."""
    return "decoder-" + name.removeprefix("onnx-")


def quantize_bundle(
    bundle: str | Path,
    precision: str,
    source: str = "onnx-fp32",
    name: str | None = None,
    io_dtype: str = "fp32",
    force: bool = False,
    tasks: bool | None = None,
    tolerance: Tolerance | None = None,
) -> QuantizeResult:
    """Add a quantized artifact (int8, int8-static, fp16 or int4) made from the bundle's fp32 graph `source`.

    It is accepted only within `tolerance` (default: the precision's budget in gptdeploy.parity.TOLERANCES); `tasks`
    also holds held-out accuracy to that budget against PyTorch's (default: when the bundle recorded it at export).
    Raises ExportError, leaving the bundle unchanged, when the request is bad or nothing meets the budget.
    """
    opened = open_bundle(bundle)
    name = name or f"onnx-{precision}"
    origin = _check_request(opened, precision, source, name, io_dtype, force)
    folder, started = artifact_folder(name), time.perf_counter()
    reference_accuracy = _reference_accuracy(opened, origin, tasks)
    tolerance = tolerance or TOLERANCES[SCHEMES[precision].precision]
    with (
        staged_folder(opened.path, folder) as staging,
        tempfile.TemporaryDirectory(dir=opened.path, prefix=".quantize-") as tmp,
    ):
        golden, tokenizer = load_golden(opened.file(GOLDEN_FILE)), Tokenizer.load(opened.file(TOKENIZER_FILE))
        job = _Job(opened, precision, opened.file(origin.path), io_dtype, tolerance, golden, tokenizer,
                   reference_accuracy, Path(tmp))  # fmt: skip
        logger.info("quantizing %s of %s to %s", source, opened.path, job.label)
        graph, steps, sensitivity = _search(job)
        if not steps[-1]:
            raise ExportError(_failure(job, steps))
        counts = count_ops(onnx.load(str(graph), load_external_data=False).graph.node)
        missing = [op for op in job.scheme.marker_ops if op not in counts]
        if missing:
            raise ExportError(f"the {job.label} graph has no {', '.join(missing)} nodes: nothing was quantized")
        for path in graph.parent.iterdir():
            path.replace(staging / path.name)
    files, final = folder_files(opened.path, folder), steps[-1]
    details = _details(job, origin, files, steps, sensitivity)
    details |= {"op_counts": counts, "quantize_seconds": round(time.perf_counter() - started, 1)}
    graph = onnx.load(str(opened.file(f"{folder}/{GRAPH_FILE}")), load_external_data=False)
    artifact = Artifact(
        name, "onnx", job.scheme.precision, f"{folder}/{GRAPH_FILE}", files, graph_opset(graph), details
    )
    add_artifact(opened.path, artifact, replace_existing=force)
    kept = f", {', '.join(final.kept_fp32)} kept in fp32" if final.kept_fp32 else ""
    logger.info("added %s: %s, %.2f MB (source %.2f MB)%s", name, final.summary(), details["size_bytes"] / 1e6,
                details["source_size_bytes"] / 1e6, kept)  # fmt: skip
    return QuantizeResult(opened.path, artifact, final.parity, details["accuracy"], final.kept_fp32,
                          details["guardrail"]["steps"])  # fmt: skip


def _details(job: _Job, origin: Artifact, files: dict[str, str], steps: list[Step], sensitivity: dict) -> dict:
    """What the manifest records about a quantized artifact: how it was made, what it measured, what was kept."""
    import onnxruntime

    final, size = steps[-1], lambda names: sum(job.bundle.file(name).stat().st_size for name in names)
    accuracy = None if final.accuracy is None else {"torch": job.reference_accuracy, "onnxruntime": final.accuracy}
    return {
        "source": origin.name, "scheme": job.scheme.scheme, "parity": final.parity.to_dict(), "accuracy": accuracy,
        "size_bytes": size(files), "source_size_bytes": size(origin.files),
        "tools": {"onnxruntime": onnxruntime.__version__},
        "guardrail": {"budget": asdict(job.tolerance), "kept_fp32": final.kept_fp32, "sensitivity": sensitivity,
                      "steps": [step.to_dict() for step in steps]},
        **_scheme_details(job.precision, job.io_dtype),
    }  # fmt: skip


def _scheme_details(precision: str, io_dtype: str) -> dict:
    if precision == "int8-static":
        from gptdeploy.export.calibration import DEFAULT_MAX_TOKENS, DEFAULT_SAMPLES

        return {"calibration": {"data": "shipped corpus", "samples": DEFAULT_SAMPLES, "max_tokens": DEFAULT_MAX_TOKENS,
                                "method": "MinMax", "symmetric": True}}  # fmt: skip
    if precision == "int4":
        return {"block_size": INT4_BLOCK_SIZE, "symmetric": True, "accuracy_level": INT4_ACCURACY_LEVEL}
    if precision == "fp16":
        return {"io_dtype": io_dtype, "fp32_ops": [*FP32_OPS, "residual Add"]}
    return {"per_channel": True}
