"""The guardrail: find a candidate within its budget, keeping the most sensitive layers out of a quantization.

A stage's full transform is judged first. If it misses and the stage has a sweep, each layer group is measured alone
(only it transformed; mean KL against the reference is its sensitivity), and the most sensitive groups are kept in
fp32, one more per step, until a candidate passes or none is left to try.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gptdeploy.export.op_counts import count_ops
from gptdeploy.parity import ParityReport

if TYPE_CHECKING:
    from gptdeploy.export.pipeline import Stage

logger = logging.getLogger(__name__)

Judge = Callable[..., "Step"]  # (candidate file, layers kept in fp32, tasks=True) -> Step


@dataclass(frozen=True)
class Step:
    """One measured candidate: which layers it kept in fp32, its parity and task accuracy, and its verdict."""

    kept_fp32: list[str]
    parity: ParityReport
    accuracy: float | None
    failures: list[str]
    transformed: bool = True  # False: the candidate holds none of its stage's marker ops (it is the source graph)

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


@dataclass(frozen=True)
class Found:
    file: Path  # the last candidate judged (its folder holds its files)
    report: dict  # what the transform said it did for that candidate (rules fired, build time, ...)
    steps: list[Step]  # every candidate judged, in order; the last one is `file`'s
    sensitivity: dict[str, float]  # layer group -> mean KL with only it transformed (measured only on a miss)


def search(stage: Stage, source: Path | None, workdir: Path, file_name: str, judge: Judge) -> Found:
    """Transform everything; on a miss, keep the most sensitive layer groups in fp32, one more per step."""
    candidate = _target(workdir, "step-0", file_name)
    report = stage.transform(source, candidate)
    steps = [_measure(stage, candidate, [], judge)]
    logger.info("%s: %s%s", stage.label or stage.name, steps[0].summary(), _verdict(steps[0]))
    groups = stage.sweep.layers(source) if stage.sweep is not None and not steps[0] else {}
    if steps[0] or len(groups) < 2:
        return Found(candidate, report, steps, {})
    logger.info("measuring the sensitivity of %d layers (each transformed alone)", len(groups))
    sensitivity = {}
    for name, nodes in groups.items():
        probe = _target(workdir, f"probe-{name}", file_name)
        stage.sweep.transform(source, probe, nodes)
        sensitivity[name] = judge(probe, [], tasks=False).parity.mean_kl
        shutil.rmtree(probe.parent)
        logger.info("  %s alone: mean KL %.2e", name, sensitivity[name])
    order = sorted(groups, key=sensitivity.__getitem__, reverse=True)
    for count in range(1, len(order)):
        shutil.rmtree(candidate.parent)
        kept, quantized = order[:count], [node for name in order[count:] for node in groups[name]]
        candidate = _target(workdir, f"step-{count}", file_name)
        report = stage.sweep.transform(source, candidate, quantized)
        steps.append(_measure(stage, candidate, kept, judge))
        logger.info("guardrail step %d/%d, keeping %s in fp32: %s%s", count, len(order) - 1, ", ".join(kept),
                    steps[-1].summary(), _verdict(steps[-1]))  # fmt: skip
        if steps[-1]:
            break
    return Found(candidate, report, steps, sensitivity)


def _measure(stage: Stage, candidate: Path, kept: list[str], judge: Judge) -> Step:
    """Judge a candidate; one without any of the ops its stage exists to add fails, however well it matches (it is
    the source graph unchanged)."""
    step = judge(candidate, kept)
    if stage.kind != "onnx" or not stage.marker_ops:
        return step
    import onnx

    counts = count_ops(onnx.load(str(candidate), load_external_data=False).graph.node)
    if any(op in counts for op in stage.marker_ops):
        return step
    unchanged = (f"the graph has none of {', '.join(stage.marker_ops)}: nothing was transformed"
                 + (f" (kept in fp32: {', '.join(kept)})" if kept else ""))  # fmt: skip
    return Step(step.kept_fp32, step.parity, step.accuracy, [*step.failures, unchanged], transformed=False)


def _target(workdir: Path, folder: str, file_name: str) -> Path:
    """Where a candidate is written: its own folder, so its data files go with it."""
    (workdir / folder).mkdir()
    return workdir / folder / file_name


def _verdict(step: Step) -> str:
    return " -> within budget" if step else " -> " + "; ".join(step.failures)


def failure_message(label: str, steps: list[Step]) -> str:
    """Why nothing was kept: the last candidate's failures and, after a sweep, the best candidate measured."""
    if not any(step.transformed for step in steps):
        return (f"{label} changed nothing: {steps[-1].failures[-1]} in any of the {len(steps)} candidates tried; "
                "the bundle is unchanged")  # fmt: skip
    message = f"{label} missed its budget against the PyTorch reference: {'; '.join(steps[-1].failures)}"
    if len(steps) > 1:
        best = max(steps, key=lambda step: (step.parity.top1_agreement, -step.parity.mean_kl))
        kept = ", ".join(best.kept_fp32) or "nothing"
        message += (f", even keeping {', '.join(steps[-1].kept_fp32)} in fp32; the best candidate (keeping {kept}) "
                    f"reached {best.summary()}")  # fmt: skip
    return message + "; the bundle is unchanged"
