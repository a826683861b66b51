"""The encoder demo (`gptdeploy demo --objective mlm`): shipped corpus -> MLM pretraining -> classification
fine-tuning on the shipped genre task -> export -> fused and quantized encoders -> a table of every artifact with
its parity, held-out classification accuracy and fill-mask agreement with PyTorch.

Stages that already finished in `out_dir` are reused and interrupted ones resume, as in the decoder demo.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from gptdeploy.bundle import MANIFEST_FILE, load_bundle
from gptdeploy.checkpoint import parameter_count
from gptdeploy.corpus.genres import LabeledText, generate_genre_task
from gptdeploy.corpus.world import generate_corpus
from gptdeploy.demo import DemoPlan, stage_status, stage_summary
from gptdeploy.encoder import Encoder, classify_with, fill_mask_with
from gptdeploy.errors import GptDeployError
from gptdeploy.export.pipeline import add_stage, export_bundle
from gptdeploy.fileio import atomic_write_json
from gptdeploy.plot import plot_losses
from gptdeploy.runtimes.base import load_encoder
from gptdeploy.stages import finetune_classifier, pretrain
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.train import TrainConfig

logger = logging.getLogger(__name__)

# Plans in steps, like the causal demo's: a slower machine takes longer and learns the same.
MLM_FULL = DemoPlan(
    preset="tiny",
    pretrain=TrainConfig(max_steps=1500, batch_size=32, learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=50,
                         eval_interval=250, checkpoint_interval=250),
    finetune=TrainConfig(max_steps=300, batch_size=32, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=30,
                         eval_interval=100, checkpoint_interval=100),
)  # fmt: skip
MLM_QUICK = DemoPlan(
    preset="tiny",
    pretrain=TrainConfig(max_steps=300, batch_size=16, learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=30,
                         eval_interval=100, checkpoint_interval=100),
    finetune=TrainConfig(max_steps=100, batch_size=32, learning_rate=1e-3, min_learning_rate=1e-4, warmup_steps=10,
                         eval_interval=100, checkpoint_interval=100),
)  # fmt: skip
FILL_MASK_TEXTS = ["Mia lives in <|mask|>.", "To make baked apples, you need apples, raisins and <|mask|>.",
                   "Once upon a time there was a loyal <|mask|> that lived in the damp grass."]  # fmt: skip


def run_mlm_demo(out_dir: str | Path, plan: DemoPlan = MLM_FULL, fresh: bool = False) -> dict:
    """Run (or continue) the encoder demo in `out_dir`; returns its numbers and writes demo-mlm.json and loss.png.

    Each stage logs a `[i/6]` line (the CLI shows them on stderr).
    """
    out_dir = Path(out_dir)
    pretrain_dir, classify_dir, bundle_dir = out_dir / "mlm", out_dir / "classify", out_dir / "bundle"
    if fresh:
        for stage_dir in (pretrain_dir, classify_dir, bundle_dir):
            shutil.rmtree(stage_dir, ignore_errors=True)
    started = time.perf_counter()
    logger.info("[1/6] generating the shipped corpus and genre task")
    corpus = generate_corpus()
    train_examples, heldout = generate_genre_task()
    status = stage_status(pretrain_dir, plan.preset)
    logger.info("[2/6] MLM pretraining of the '%s' model (%s)", plan.preset, status)
    if status != "done":
        pretrain(pretrain_dir, plan.preset, corpus.documents, plan.pretrain, resume=status == "resume", force=True,
                 objective="mlm")  # fmt: skip
    classify_status = stage_status(classify_dir, plan.preset)
    logger.info("[3/6] fine-tuning to classify %d genre sentences (%s)", len(train_examples), classify_status)
    if classify_status != "done":
        finetune_classifier(pretrain_dir, classify_dir, (train_examples, heldout), plan.finetune,
                            resume=classify_status == "resume", force=True)  # fmt: skip
    fresh_bundle = not (bundle_dir / MANIFEST_FILE).is_file() or classify_status != "done"
    logger.info("[4/6] exporting the encoder to ONNX and checking parity (%s)", "new" if fresh_bundle else "done")
    if fresh_bundle:
        export_bundle(classify_dir, bundle_dir, force=True)
    logger.info("[5/6] fusing and quantizing the encoder, each variant within its budget")
    rejected = add_encoder_variants(bundle_dir)
    logger.info("[6/6] comparing torch and every artifact: parity, held-out accuracy, fill-mask")
    with load_encoder(classify_dir) as reference:
        expected = fill_mask_with(reference, FILL_MASK_TEXTS)
        rows = [_row("checkpoint", "torch", "fp32", None, reference, heldout, expected)]
    for artifact in load_bundle(bundle_dir).artifacts:
        with load_encoder(bundle_dir, artifact=artifact.name) as encoder:
            rows.append(_row(artifact.name, "onnxruntime", artifact.precision, artifact.details.parity, encoder,
                             heldout, expected))  # fmt: skip
    result = {
        "preset": plan.preset,
        "parameters": parameter_count(classify_dir),
        "pretrain": stage_summary(pretrain_dir) | _masked_summary(pretrain_dir),
        "classify": stage_summary(classify_dir),
        "heldout_examples": len(heldout),
        "fill_mask": [result.to_dict() for result in expected],
        "bundle": str(bundle_dir),
        "backends": rows,
        "rejected": rejected,
        "plot": str(plot_losses([pretrain_dir, classify_dir], out_dir / "loss.png")),
        "plan": {"pretrain": asdict(plan.pretrain), "finetune": asdict(plan.finetune)},
        "wall_seconds": time.perf_counter() - started,
    }
    atomic_write_json(out_dir / "demo-mlm.json", result)
    return result


def add_encoder_variants(bundle_dir: Path) -> dict[str, str]:
    """Add the fused graph and the int8 / fp16 / int4 encoders the bundle lacks; {name: reason} of those that missed
    their budget."""
    from gptdeploy.export.fusion import fusion_stage
    from gptdeploy.export.quantize import quantization_stage

    bundle = load_bundle(bundle_dir)
    tokenizer = Tokenizer.load(bundle.path)
    stages = [fusion_stage("tensorrt", bundle.config),
              *(quantization_stage(p, bundle.config, tokenizer) for p in ("int8", "fp16", "int4"))]  # fmt: skip
    present = {artifact.name for artifact in bundle.artifacts}
    rejected = {}
    for stage in stages:
        if stage.name in present:
            continue
        try:
            add_stage(bundle_dir, stage, "onnx-fp32", tasks=False)
        except GptDeployError as error:
            logger.info("      %s rejected: %s", stage.name, error)
            rejected[stage.name] = str(error)
    return rejected


def _row(name: str, backend: str, precision: str, parity: dict | None, encoder: Encoder,
         heldout: Sequence[LabeledText], expected) -> dict:  # fmt: skip
    predicted = [r.label for i in range(0, len(heldout), 64)
                 for r in classify_with(encoder, [e.text for e in heldout[i : i + 64]])]  # fmt: skip
    accuracy = sum(p == e.label for p, e in zip(predicted, heldout, strict=True)) / len(heldout)
    filled = fill_mask_with(encoder, FILL_MASK_TEXTS)
    same_top_k = sum(
        [[p["token_id"] for p in mask] for mask in got.predictions]
        == [[p["token_id"] for p in mask] for mask in want.predictions]
        for got, want in zip(filled, expected, strict=True)
    )
    return {"artifact": name, "backend": backend, "precision": precision, "accuracy": accuracy,
            "fill_mask_top_k_identical": same_top_k, "fill_mask_texts": len(FILL_MASK_TEXTS),
            "parity_passed": True if parity is None else parity["passed"],
            "max_rel_logit_diff": 0.0 if parity is None else parity["max_rel_logit_diff"],
            "mean_kl": 0.0 if parity is None else parity["mean_kl"]}  # fmt: skip


def _masked_summary(pretrain_dir: Path) -> dict:
    """The masked-token accuracy and the unigram baseline's, from the last validation record."""
    from gptdeploy.plot import read_metrics

    last = [r for r in read_metrics(pretrain_dir) if "val_unigram_accuracy" in r][-1]
    return {"val_accuracy": last["val_accuracy"], "val_unigram_accuracy": last["val_unigram_accuracy"]}


def describe_mlm_demo(result: dict) -> str:
    pre, cls = result["pretrain"], result["classify"]
    lines = [
        f"model: '{result['preset']}' encoder, {result['parameters']:,} parameters",
        f"MLM pretrain: {pre['step']} steps, masked loss {pre['val_loss']:.3f}, masked-token accuracy "
        f"{pre['val_accuracy']:.1%} (unigram baseline {pre['val_unigram_accuracy']:.1%})",
        f"classify fine-tune: {cls['step']} steps, val loss {cls['val_loss']:.3f}",
        "",
        *(f"{r['text']}  ->  {r['filled']}" for r in result["fill_mask"]),
        "",
        f"{'artifact':<16} {'backend':<12} {'precision':<9} {'max|dlogit|':>11} {'mean KL':>9} "
        f"{'accuracy':>9} {'fill-mask':>9}  parity",
    ]
    for r in result["backends"]:
        lines.append(f"{r['artifact']:<16} {r['backend']:<12} {r['precision']:<9} {r['max_rel_logit_diff']:>11.2e} "
                     f"{r['mean_kl']:>9.2e} {r['accuracy']:>9.1%} {r['fill_mask_top_k_identical']:>5}/"
                     f"{r['fill_mask_texts']:<3}  {'ok' if r['parity_passed'] else 'FAIL'}")  # fmt: skip
    lines += [f"{name:<16} rejected: {reason}" for name, reason in result["rejected"].items()]
    lines.append(f"\n(accuracy: held-out genre classification over {result['heldout_examples']} sentences; "
                 f"bundle: {result['bundle']}; wall time {result['wall_seconds']:.0f} s)")  # fmt: skip
    return "\n".join(lines)
