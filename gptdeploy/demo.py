"""The end-to-end demo: shipped data -> pretrain -> fine-tune -> export -> fused and quantized graphs -> a table of
every backend and variant with parity, held-out accuracy and decode speed.

Stages that already finished in `out_dir` are reused and interrupted ones resume, so a second run costs little.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from gptdeploy.bundle import GOLDEN_FILE, MANIFEST_FILE, load_bundle
from gptdeploy.checkpoint import CONFIG_FILE, TRAIN_STATE_FILE, parameter_count, read_config
from gptdeploy.compare import compare_backends, describe_rows
from gptdeploy.corpus.tasks import Example, check_answer, generate_tasks
from gptdeploy.corpus.world import corpus_stats, generate_corpus
from gptdeploy.errors import ConfigError, GptDeployError
from gptdeploy.evaluate import exact_match
from gptdeploy.export.pipeline import add_stage, export_bundle
from gptdeploy.export.quantize import calibration_texts
from gptdeploy.fileio import atomic_write_json
from gptdeploy.golden import golden_prompts, load_golden
from gptdeploy.plot import plot_losses
from gptdeploy.runtimes.base import load_runtime
from gptdeploy.stages import finetune, pretrain
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.train import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoPlan:
    preset: str
    pretrain: TrainConfig
    finetune: TrainConfig


# Plans in steps: every machine trains the same schedule to its last step (a slower one takes longer, never learns
# less). Sized for 2 quiet CPU cores: FULL about 8.5 minutes end to end, QUICK about 2.
FULL = DemoPlan(
    preset="small",
    pretrain=TrainConfig(max_steps=1350, batch_size=16, learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=60,
                         eval_interval=250, checkpoint_interval=250),
    finetune=TrainConfig(max_steps=3000, batch_size=32, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=50,
                         eval_interval=500, checkpoint_interval=500),
)  # fmt: skip
QUICK = DemoPlan(
    preset="tiny",
    pretrain=TrainConfig(max_steps=800, batch_size=16, learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=30,
                         eval_interval=250, checkpoint_interval=250),
    finetune=TrainConfig(max_steps=5000, batch_size=32, learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=50,
                         eval_interval=1000, checkpoint_interval=1000),
)  # fmt: skip


def stage_status(stage_dir: Path, preset: str) -> str:
    """'new', 'resume' (a checkpoint mid-run) or 'done'; refuses a folder that holds another preset's run."""
    if not (stage_dir / CONFIG_FILE).is_file():
        return "new"
    _config, info = read_config(stage_dir)
    if info.get("preset", preset) != preset:
        raise ConfigError(f"{stage_dir} holds a '{info['preset']}' run; pass --fresh or another --out")
    if info.get("finished"):
        return "done"
    return "resume" if (stage_dir / TRAIN_STATE_FILE).is_file() else "new"


def run_demo(out_dir: str | Path, plan: DemoPlan = FULL, fresh: bool = False) -> dict:
    """Run (or continue) the demo in `out_dir` and return its numbers; also writes demo.json and loss.png.

    Each stage logs a `[i/7]` line (the CLI shows them on stderr).
    """
    out_dir = Path(out_dir)
    pretrain_dir, finetune_dir, bundle_dir = out_dir / "pretrain", out_dir / "finetune", out_dir / "bundle"
    if fresh:
        for stage_dir in (pretrain_dir, finetune_dir, bundle_dir):
            shutil.rmtree(stage_dir, ignore_errors=True)
    started = time.perf_counter()
    logger.info("[1/7] generating the shipped corpus and tasks")
    corpus = generate_corpus()
    train_examples, heldout = generate_tasks()

    status = stage_status(pretrain_dir, plan.preset)
    logger.info("[2/7] pretraining the '%s' model (%s)", plan.preset, status)
    if status != "done":
        pretrain(pretrain_dir, plan.preset, corpus.documents, plan.pretrain, resume=status == "resume", force=True)
    finetune_status = stage_status(finetune_dir, plan.preset)
    logger.info("[3/7] fine-tuning on %s task examples (%s)", f"{len(train_examples):,}", finetune_status)
    if finetune_status != "done":
        finetune(pretrain_dir, finetune_dir, (train_examples, heldout), plan.finetune,
                 resume=finetune_status == "resume", force=True)  # fmt: skip

    logger.info("[4/7] evaluating on %d held-out examples", len(heldout))
    with load_runtime(finetune_dir, backend="torch") as runtime:
        report = exact_match(runtime, heldout)
    fresh_bundle = not (bundle_dir / MANIFEST_FILE).is_file() or finetune_status != "done"
    logger.info("[5/7] exporting to ONNX and checking parity (%s)", "new" if fresh_bundle else "done")
    if fresh_bundle:
        prompts = golden_prompts(heldout, corpus.documents)
        export_bundle(finetune_dir, bundle_dir, force=True, heldout=heldout, prompts=prompts)
    logger.info("[6/7] fusing and quantizing the graph, each variant within its accuracy budget")
    rejected = add_variants(bundle_dir, heldout, calibration_texts(corpus.documents))
    logger.info("[7/7] comparing backends and variants: parity, task accuracy, decode speed")
    bundle = load_bundle(bundle_dir)
    golden = load_golden(bundle.file(GOLDEN_FILE))
    models = [("torch", finetune_dir, None)] + [("onnxruntime", bundle_dir, a.name) for a in bundle.artifacts]
    backends = compare_backends(models, golden, heldout)
    shown = range(0, len(heldout), max(1, len(heldout) // 6))[:6]
    result = {
        "preset": plan.preset,
        "parameters": parameter_count(finetune_dir),
        "corpus": corpus_stats(corpus),
        "pretrain": stage_summary(pretrain_dir),
        "finetune": stage_summary(finetune_dir),
        "heldout": report.to_dict(),
        "bundle": str(bundle_dir),
        "backends": backends,
        "rejected": rejected,
        "generations": [
            {
                "prompt": heldout[i].prompt,
                "completion": report.completions[i],
                "expected": heldout[i].completion,
                "correct": check_answer(heldout[i], report.completions[i]),
            }
            for i in shown
        ],
        "plot": str(plot_losses([pretrain_dir, finetune_dir], out_dir / "loss.png")),
        "plan": {"pretrain": asdict(plan.pretrain), "finetune": asdict(plan.finetune)},
        "wall_seconds": time.perf_counter() - started,
    }
    atomic_write_json(out_dir / "demo.json", result)
    return result


def add_variants(bundle_dir: Path, heldout: Sequence[Example], calibration: Sequence[str]) -> dict[str, str]:
    """Add each fused and quantized variant the bundle lacks; returns {name: reason} for those that missed their
    budget. The ONNX Runtime CPU variants (int8 dynamic, int4) are made from the slot graph, which the engine batches
    on; the TensorRT-oriented ones (int8-static QDQ, fp16) from the standard exported graph."""
    from gptdeploy.export.fusion import fusion_stage
    from gptdeploy.export.quantize import quantization_stage

    bundle = load_bundle(bundle_dir)
    tokenizer = Tokenizer.load(bundle.path)

    def quantized(precision: str):
        return quantization_stage(precision, bundle.config, tokenizer, calibration_texts=calibration)

    stages = [(fusion_stage("onnxruntime", bundle.config), "onnx-fp32"),
              (fusion_stage("tensorrt", bundle.config), "onnx-fp32"), (quantized("int8"), "onnx-fused-ort"),
              (quantized("int8-static"), "onnx-fp32"), (quantized("fp16"), "onnx-fp32"),
              (quantized("int4"), "onnx-fused-ort")]  # fmt: skip
    present = {artifact.name for artifact in bundle.artifacts}
    rejected = {}
    for stage, source in stages:
        if stage.name in present:
            continue
        logger.info("      %s (from %s)", stage.name, source)
        try:
            add_stage(bundle_dir, stage, source, heldout=heldout)
        except GptDeployError as error:
            logger.info("      %s rejected: %s", stage.name, error)
            rejected[stage.name] = str(error)
    return rejected


def stage_summary(stage_dir: Path) -> dict:
    _, info = read_config(stage_dir)
    keys = ("step", "train_loss", "val_loss", "val_perplexity", "val_bits_per_char")
    return {"checkpoint": str(stage_dir), **{key: info[key] for key in keys if key in info}}


def describe_demo(result: dict) -> str:
    corpus, pre, fine, heldout = result["corpus"], result["pretrain"], result["finetune"], result["heldout"]
    per_task = "  ".join(f"{task} {acc:.1%}" for task, acc in heldout["per_task"].items())
    lines = [
        f"model: '{result['preset']}' preset, {result['parameters']:,} parameters",
        f"corpus: {corpus['chars']:,} characters; entropy bound {corpus['bits_per_char']:.3f} bits/char "
        f"(unigram {corpus['unigram_bits_per_char']:.3f}, gzip {corpus['gzip_bits_per_char']:.3f}, "
        f"xz {corpus['xz_bits_per_char']:.3f})",
        f"pretrain: {pre['step']} steps, val loss {pre['val_loss']:.4f} nats/token, perplexity "
        f"{pre['val_perplexity']:.3f}, {pre['val_bits_per_char']:.3f} bits/char",
        f"finetune: {fine['step']} steps, val loss {fine['val_loss']:.4f}",
        f"held-out exact match: {heldout['accuracy']:.1%} ({per_task})",
        "",
        *(
            f"{'ok ' if g['correct'] else 'BAD'} {g['prompt']!r} -> {g['completion']!r} (expected {g['expected']!r})"
            for g in result["generations"]
        ),
        "",
        describe_rows(result["backends"], result["rejected"]),
        "",
        f"bundle: {result['bundle']}   loss curves: {result['plot']}   wall time: {result['wall_seconds']:.0f} s",
    ]
    return "\n".join(lines)
