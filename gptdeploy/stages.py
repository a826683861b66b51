"""The two training stages as library calls: pretrain a model from text, fine-tune it on prompt/completion pairs.

Each stage gathers its data (the shipped samples unless the user gives files), builds or loads the model, runs the
one training loop and returns numbers; the CLI and the demo only call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from gptdeploy import distributed
from gptdeploy.checkpoint import holds_checkpoint, load_checkpoint, read_config
from gptdeploy.classification import ClassifyData, label_names
from gptdeploy.corpus.genres import GENRE_TASK, LabeledText
from gptdeploy.corpus.tasks import SHIPPED_TASKS, Example
from gptdeploy.data import FinetuneData, MaskedPretrainData, PretrainData
from gptdeploy.errors import CheckpointError, ConfigError
from gptdeploy.evaluate import EvalReport, exact_match
from gptdeploy.model import GPT, GPTConfig
from gptdeploy.resources import require_model_memory
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.train import TrainConfig, TrainResult, train
from gptdeploy.validation import checked_arguments

OBJECTIVES = ("causal", "mlm")
PRETRAIN_DEFAULTS = TrainConfig()
CLASSIFY_DEFAULTS = TrainConfig(max_steps=300, batch_size=32, learning_rate=1e-3, min_learning_rate=1e-4,
                                warmup_steps=30, eval_interval=100, checkpoint_interval=100)  # fmt: skip
FINETUNE_DEFAULTS = TrainConfig(
    max_steps=3000, batch_size=32, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=50, eval_interval=500
)


@dataclass(frozen=True)
class FinetuneResult:
    train: TrainResult
    heldout: EvalReport | None  # None on ranks other than 0 under torchrun


@checked_arguments(ConfigError)
def pretrain(
    out_dir: str | Path,
    preset: str,
    documents: Sequence[str],
    train_config: TrainConfig = PRETRAIN_DEFAULTS,
    model_overrides: dict | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    data: str = "shipped corpus",
    force: bool = False,
    objective: Literal["causal", "mlm"] = "causal",
    mask_rate: float = 0.15,
) -> TrainResult:
    """Train a tokenizer and a model from scratch on `documents` (`data` says where they came from, for the record).

    `objective`: "causal" predicts each next token; "mlm" trains an encoder (bidirectional attention, a `<|mask|>`
    token) to predict a share `mask_rate` of masked tokens from both sides. A checkpoint already in `out_dir` is
    continued with `resume` (with the objective it was started with) and overwritten only with `force`.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    refuse_overwriting(out_dir, resume, force)
    if resume:
        config, recorded = read_config(out_dir)
        tokenizer = Tokenizer.load(out_dir)
        objective, mask_rate = "causal" if config.causal else "mlm", recorded.get("mask_rate", mask_rate)
    else:
        base = GPTConfig.preset(preset, **{"causal": objective == "causal", **(model_overrides or {})})
        if base.causal != (objective == "causal"):
            raise ConfigError(f"--set causal={base.causal} contradicts the objective {objective}; drop it")
        require_model_memory(base, train_config.batch_size)  # before the tokenizer is trained for it
        tokenizer = Tokenizer.train(documents, vocab_size=base.vocab_size, mask=objective == "mlm")
        config = replace(base, vocab_size=tokenizer.vocab_size)
    batching = (config.block_size, train_config.batch_size, train_config.seed)
    if objective == "mlm":
        data_set = MaskedPretrainData(documents, tokenizer, *batching, mask_rate=mask_rate)
    else:
        data_set = PretrainData(documents, tokenizer, *batching)
    info = {"stage": "pretrain", "preset": preset, "data": data, "objective": objective}
    if objective == "mlm":
        info["mask_rate"] = mask_rate
    torch.manual_seed(train_config.seed)  # the initial weights depend on the seed alone
    return train(GPT(config), tokenizer, data_set, train_config, out_dir, info, resume, device, progress)


@checked_arguments(ConfigError)
def finetune(
    base: str | Path,
    out_dir: str | Path,
    examples: tuple[Sequence[Example], Sequence[Example]],
    train_config: TrainConfig = FINETUNE_DEFAULTS,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    tasks: str = SHIPPED_TASKS,
    force: bool = False,
) -> FinetuneResult:
    """Supervised fine-tuning of a checkpoint on (train, held-out) examples, then held-out exact match with greedy
    decoding; `tasks` names the examples' origin in the checkpoint (exports check task accuracy for SHIPPED_TASKS).
    A checkpoint already in `out_dir` (`base` itself included) is continued with `resume`, overwritten only with
    `force`."""
    refuse_overwriting(out_dir, resume, force)
    checkpoint = load_checkpoint(base)
    train_examples, heldout = examples
    config = checkpoint.config
    require_model_memory(config, train_config.batch_size)
    data = FinetuneData(train_examples, heldout, checkpoint.tokenizer, config.block_size, train_config.batch_size,
                        seed=train_config.seed)  # fmt: skip
    info = {"stage": "finetune", "base": str(base), "preset": checkpoint.info.get("preset"), "tasks": tasks}
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    result = train(model, tokenizer, data, train_config, out_dir, info, resume, device, progress)
    report = None
    if distributed.is_main_process():
        report = exact_match(TorchRuntime(model, tokenizer, device=str(next(model.parameters()).device)), heldout)
    return FinetuneResult(train=result, heldout=report)


@dataclass(frozen=True)
class ClassifyResult:
    train: TrainResult
    labels: list[str]
    heldout_accuracy: float  # on every held-out example


@checked_arguments(ConfigError)
def finetune_classifier(
    base: str | Path,
    out_dir: str | Path,
    examples: tuple[Sequence[LabeledText], Sequence[LabeledText]],
    train_config: TrainConfig = CLASSIFY_DEFAULTS,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    task: str = GENRE_TASK,
    force: bool = False,
) -> ClassifyResult:
    """Fine-tune a checkpoint (an MLM encoder, or a causal model) to label texts: a linear head over the mean of
    its final hidden states, trained with everything else; returns held-out accuracy. `task` names the examples'
    origin in the checkpoint. The head is new unless `base` already classifies into the same labels."""
    refuse_overwriting(out_dir, resume, force)
    checkpoint = load_checkpoint(base)
    train_examples, heldout = examples
    labels = label_names(train_examples, heldout)
    config = replace(checkpoint.config, num_labels=len(labels))
    require_model_memory(config, train_config.batch_size)
    state = checkpoint.model.state_dict()
    if checkpoint.info.get("labels") != labels:
        state = {name: value for name, value in state.items() if not name.startswith("score.")}
    torch.manual_seed(train_config.seed)  # the new head's initial weights
    model = GPT(config)
    model.load_state_dict(state, strict=False)
    data = ClassifyData(train_examples, heldout, labels, checkpoint.tokenizer, config.block_size,
                        train_config.batch_size, train_config.seed)  # fmt: skip
    info = {"stage": "finetune", "base": str(base), "preset": checkpoint.info.get("preset"), "task": task,
            "objective": checkpoint.info.get("objective", "causal"), "labels": labels}  # fmt: skip
    result = train(model, checkpoint.tokenizer, data, train_config, out_dir, info, resume, device, progress)
    return ClassifyResult(train=result, labels=labels, heldout_accuracy=result.val_accuracy)


def refuse_overwriting(out_dir: str | Path, resume: bool, force: bool) -> None:
    """Training writes weights, training state and metrics into `out_dir`: never over another run's without consent."""
    if not resume and not force and holds_checkpoint(out_dir):
        raise CheckpointError(f"{out_dir} already holds a checkpoint; pass --resume to continue its run, --force to "
                              "overwrite it, or choose another --out")  # fmt: skip
