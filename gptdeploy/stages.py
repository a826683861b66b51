"""The two training stages as library calls: pretrain a model from text, fine-tune it on prompt/completion pairs.

Each stage gathers its data (the shipped samples unless the user gives files), builds or loads the model, runs the
one training loop and returns numbers; the CLI and the demo only call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from gptdeploy import distributed
from gptdeploy.checkpoint import load_checkpoint, read_config
from gptdeploy.data import FinetuneData, PretrainData, read_documents, read_pairs
from gptdeploy.errors import DataError
from gptdeploy.evaluate import EvalReport, exact_match
from gptdeploy.model import GPT, GPTConfig
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from gptdeploy.tasks import SHIPPED_TASKS, Example, generate_tasks
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.train import TrainConfig, TrainResult, train
from gptdeploy.world import generate_corpus

PRETRAIN_DEFAULTS = TrainConfig()
FINETUNE_DEFAULTS = TrainConfig(
    max_steps=3000, batch_size=32, learning_rate=2e-3, min_learning_rate=2e-4, warmup_steps=50, eval_interval=500
)


@dataclass(frozen=True)
class FinetuneResult:
    train: TrainResult
    heldout: EvalReport | None  # None on ranks other than 0 under torchrun


def pretrain(
    out_dir: str | Path,
    preset: str = "small",
    sources: Sequence[str | Path] = (),
    train_config: TrainConfig = PRETRAIN_DEFAULTS,
    model_overrides: dict | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train a tokenizer and a model from scratch on `sources` (default: the shipped corpus)."""
    documents = read_documents(sources) if sources else generate_corpus().text.split("\n\n")
    if resume:
        config, _ = read_config(out_dir)
        tokenizer = Tokenizer.load(out_dir)
    else:
        base = GPTConfig.preset(preset, **(model_overrides or {}))
        tokenizer = Tokenizer.train(documents, vocab_size=base.vocab_size)
        config = replace(base, vocab_size=tokenizer.vocab_size)
    data = PretrainData(documents, tokenizer, config.block_size, train_config.batch_size, seed=train_config.seed)
    info = {"stage": "pretrain", "preset": preset, "sources": [str(s) for s in sources] or ["shipped corpus"]}
    torch.manual_seed(train_config.seed)  # the initial weights depend on the seed alone
    return train(GPT(config), tokenizer, data, train_config, out_dir, info, resume, device, progress)


def load_task_examples(train_file: str | Path | None, heldout_file: str | Path | None) -> tuple[list[Example], ...]:
    """The user's JSONL pairs, or the shipped tasks with their fixed held-out split."""
    if train_file is None and heldout_file is None:
        return generate_tasks()
    if train_file is None or heldout_file is None:
        raise DataError("give both --data and --heldout (or neither, for the shipped tasks)")
    return read_pairs(train_file), read_pairs(heldout_file)


def finetune(
    base: str | Path,
    out_dir: str | Path,
    train_file: str | Path | None = None,
    heldout_file: str | Path | None = None,
    train_config: TrainConfig = FINETUNE_DEFAULTS,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> FinetuneResult:
    """Supervised fine-tuning of a checkpoint, then held-out exact match with greedy decoding."""
    checkpoint = load_checkpoint(base)
    train_examples, heldout = load_task_examples(train_file, heldout_file)
    config = checkpoint.config
    data = FinetuneData(train_examples, heldout, checkpoint.tokenizer, config.block_size, train_config.batch_size,
                        seed=train_config.seed)  # fmt: skip
    tasks = SHIPPED_TASKS if train_file is None else str(train_file)
    info = {"stage": "finetune", "base": str(base), "preset": checkpoint.info.get("preset"), "tasks": tasks}
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    result = train(model, tokenizer, data, train_config, out_dir, info, resume, device, progress)
    report = None
    if distributed.is_main_process():
        report = exact_match(TorchRuntime(model, tokenizer, device=str(next(model.parameters()).device)), heldout)
    return FinetuneResult(train=result, heldout=report)
