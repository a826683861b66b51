"""One training loop for pretraining and fine-tuning: AdamW, warmup + cosine, clipping, accumulation, eval.

Runs in one process or under torchrun (DDP). Checkpoints carry the full training state, so a killed run resumed
from its last checkpoint reaches the same weights as a run that was never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from gptdeploy import distributed
from gptdeploy.checkpoint import METRICS_FILE, TRAIN_STATE_FILE, load_train_state, save_checkpoint
from gptdeploy.data import IGNORE_INDEX, Batch
from gptdeploy.errors import CheckpointError, ConfigError, DataError, TrainingError
from gptdeploy.model import GPT
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.validation import check_field_types

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 1000  # optimizer steps; the LR schedule spans exactly this many
    batch_size: int = 16  # sequences per micro-batch and process
    grad_accum: int = 1  # micro-batches per optimizer step
    learning_rate: float = 3e-3  # peak LR after warmup
    min_learning_rate: float = 3e-4  # where the cosine decay ends
    warmup_steps: int = 50
    weight_decay: float = 0.1  # on matrices and embeddings only, not on biases and norms
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_interval: int = 100  # steps between validation passes (and at the last step)
    eval_batches: int = 16
    log_interval: int = 10  # steps between training-loss records in metrics.jsonl
    checkpoint_interval: int = 250  # steps between checkpoints (and at the last step)
    seed: int = 0
    compile: bool = False  # torch.compile: measured slower than eager on a 2-core CPU, useful on GPU
    # A wall-clock limit, only when asked for: the run stops with a checkpoint saved as interrupted (resumable, never
    # finished). The schedule is planned in steps and never depends on the machine's speed.
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        check_field_types(self, ConfigError, "training config")
        for name in ("max_steps", "batch_size", "grad_accum", "eval_interval", "checkpoint_interval", "log_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ConfigError(
                f"need 0 <= min_learning_rate <= learning_rate and learning_rate > 0, "
                f"got {self.min_learning_rate} and {self.learning_rate}"
            )

    def lr_at(self, step: int) -> float:
        """Linear warmup to the peak, then cosine decay to the minimum at max_steps."""
        if step < self.warmup_steps:
            return self.learning_rate * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return self.min_learning_rate + cosine * (self.learning_rate - self.min_learning_rate)


class TrainingData(Protocol):
    val_chars_per_token: float | None
    unigram_token: int | None  # masked LM: the most frequent training token, the baseline's every prediction

    def batch(self, index: int) -> Batch: ...

    def val_batches(self, max_batches: int) -> list[Batch]: ...


@dataclass(frozen=True)
class TrainResult:
    steps: int
    train_loss: float
    val_loss: float
    val_perplexity: float
    val_bits_per_char: float | None
    val_accuracy: float  # top-1 accuracy of the validation targets: next tokens, masked tokens or class labels
    val_unigram_accuracy: float | None  # masked LM: the same accuracy of always predicting the most frequent token
    seconds: float
    tokens_per_second: float
    stopped_early: bool  # the time limit (max_minutes) ran out before max_steps: the run is saved as interrupted
    rank_checksums: list[float]  # one per process; all equal or training raises


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=config.betas)


def batch_logits(model: nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
    """Token logits (B, T, vocab) for token targets, class scores (B, labels) for one label per sequence."""
    mask = batch.attention_mask.to(device) if batch.attention_mask is not None else None
    if batch.targets.dim() == 1:
        return model(batch.inputs.to(device), attention_mask=mask, classify=True)[0]
    return model(batch.inputs.to(device), attention_mask=mask)[0]


def batch_loss(model: nn.Module, batch: Batch, device: torch.device) -> torch.Tensor:
    logits = batch_logits(model, batch, device)
    targets = batch.targets.to(device)
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def evaluate(model: GPT, data: TrainingData, max_batches: int, device: torch.device) -> dict[str, float]:
    """Mean validation loss per target, perplexity, top-1 accuracy of the targets (next, masked or class), bits per
    character where text allows, and the unigram baseline's accuracy where the data names one (masked LM)."""
    model.eval()
    total_loss, total_targets, correct, unigram_correct = 0.0, 0, 0, 0
    unigram = data.unigram_token
    for batch in data.val_batches(max_batches):
        logits = batch_logits(model, batch, device).float()
        targets = batch.targets.to(device)
        counted = targets != IGNORE_INDEX
        total_loss += F.cross_entropy(logits[counted], targets[counted], reduction="sum").item()
        total_targets += int(counted.sum())
        correct += int((logits.argmax(dim=-1) == targets)[counted].sum())
        unigram_correct += int((targets == unigram)[counted].sum()) if unigram is not None else 0
    model.train()
    loss = total_loss / max(1, total_targets)
    metrics = {"val_loss": loss, "val_perplexity": math.exp(min(loss, 50.0)),
               "val_accuracy": correct / max(1, total_targets)}  # fmt: skip
    if data.val_chars_per_token:
        metrics["val_bits_per_char"] = loss / math.log(2) / data.val_chars_per_token
    if unigram is not None:
        metrics["val_unigram_accuracy"] = unigram_correct / max(1, total_targets)
    return metrics


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl. A torn last line (a kill in the middle of an append) is dropped with a
    warning; a bad line anywhere else is an error naming it."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("step"), int):
                raise ValueError("not a record with an integer step")
        except ValueError as error:
            if number == len(lines):
                logger.warning("%s: dropping its last line, cut short (by a kill?): %.60r", path, line)
                break
            raise DataError(f"{path} line {number} is corrupt ({error}); delete that line to go on") from error
        records.append(record)
    return records


class MetricsLog:
    """Append-only JSONL of training records; on resume, records past the resumed step are dropped."""

    def __init__(self, path: Path, enabled: bool, resume_step: int | None):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.exists():
            kept = [record for record in read_metrics(path) if record["step"] <= resume_step]
            path.write_text("".join(json.dumps(record) + "\n" for record in kept))
        elif enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")

    def write(self, record: dict) -> None:
        if self.enabled:
            with self.path.open("a") as log:
                log.write(json.dumps(record) + "\n")


def train(
    model: GPT,
    tokenizer: Tokenizer,
    data: TrainingData,
    config: TrainConfig,
    out_dir: str | Path,
    info: dict | None = None,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
) -> TrainResult:
    """Train `model` in place and checkpoint it into `out_dir` (config.json, weights, tokenizer, train state)."""
    context = distributed.setup(device)
    try:
        return _run(Trainer(model, tokenizer, data, config, Path(out_dir), info or {}, context), resume, progress)
    finally:
        distributed.teardown(context)


def _run(trainer: Trainer, resume: bool, progress: bool) -> TrainResult:
    """Runs in its own frame so the trainer (and its DDP wrapper) is freed before the process group goes."""
    start_step = trainer.load_state() if resume else 0
    return trainer.run(start_step, progress)


class Trainer:
    """The state of one training run: model, optimizer, data, and where checkpoints and metrics go."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        data: TrainingData,
        config: TrainConfig,
        out_dir: Path,
        info: dict,
        context: distributed.DistContext,
    ):
        self.model, self.tokenizer, self.data, self.config = model, tokenizer, data, config
        self.out_dir, self.info, self.context = out_dir, info, context
        self.stage = info.get("stage", "pretrain")
        torch.manual_seed(config.seed + context.rank)
        model.to(context.device).train()
        self.optimizer = make_optimizer(model, config)
        self.runner: nn.Module = torch.compile(model) if config.compile else model
        if context.enabled:
            self.runner = DistributedDataParallel(self.runner)
        on_gpu = context.device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_gpu else contextlib.nullcontext()

    def load_state(self) -> int:
        """Restore weights, optimizer and RNG from the last checkpoint; returns the step to continue from."""
        state = load_train_state(self.out_dir)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
        except (RuntimeError, ValueError, TypeError, KeyError) as error:
            message = " ".join(str(error).split())[:200]
            raise CheckpointError(
                f"{self.out_dir / TRAIN_STATE_FILE} does not fit this model and optimizer "
                f"({message}); resume the run that wrote it, or start over with --force"
            ) from error
        return state["step"]

    def save(self, step: int, summary: dict) -> None:
        if not self.context.is_main:
            return
        train_state = {"step": step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                       "rng": torch.get_rng_state(), "train_config": json.dumps(asdict(self.config))}  # fmt: skip
        save_checkpoint(self.out_dir, self.model, self.tokenizer, {**self.info, **summary}, train_state)

    def train_step(self, step: int) -> tuple[float, int]:
        """One optimizer step over `grad_accum` micro-batches; returns the loss and the tokens processed."""
        config, context = self.config, self.context
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        loss_sum, tokens = 0.0, 0
        for micro in range(config.grad_accum):
            batch = self.data.batch((step * config.grad_accum + micro) * context.world_size + context.rank)
            last_micro = micro == config.grad_accum - 1
            sync = contextlib.nullcontext() if last_micro or not context.enabled else self.runner.no_sync()
            with sync:
                with self.autocast:
                    loss = batch_loss(self.runner, batch, context.device) / config.grad_accum
                loss.backward()
            loss_sum += loss.item()
            tokens += batch.tokens * context.world_size
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(loss_sum):
            raise TrainingError(f"loss became {loss_sum} at step {step + 1}; lower the learning rate")
        return loss_sum, tokens

    def run(self, start_step: int, progress: bool) -> TrainResult:
        config, context = self.config, self.context
        log = MetricsLog(self.out_dir / METRICS_FILE, context.is_main, start_step if start_step else None)
        bar = tqdm(
            total=config.max_steps, initial=start_step, desc=self.stage, disable=not (progress and context.is_main)
        )
        started = window_start = time.perf_counter()
        window_tokens = total_tokens = 0
        summary: dict = {}
        step, stopped_early, train_loss = start_step, False, float("nan")
        while step < config.max_steps and not stopped_early:
            train_loss, tokens = self.train_step(step)
            step += 1
            window_tokens, total_tokens = window_tokens + tokens, total_tokens + tokens
            bar.update(1)
            now = time.perf_counter()
            if step % config.log_interval == 0 or step == config.max_steps:
                tokens_per_s = window_tokens / (now - window_start)
                log.write({"stage": self.stage, "step": step, "lr": config.lr_at(step - 1), "train_loss": train_loss,
                           "tokens_per_s": tokens_per_s, "elapsed_s": now - started})  # fmt: skip
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                window_start, window_tokens = now, 0
            out_of_time = config.max_minutes is not None and now - started > 60 * config.max_minutes
            stopped_early = distributed.any_rank(context, out_of_time) and step < config.max_steps
            finished = step == config.max_steps
            if step % config.eval_interval == 0 or finished or stopped_early:
                summary = evaluate(self.model, self.data, config.eval_batches, context.device)
                log.write({"stage": self.stage, "step": step, **summary})
            if step % config.checkpoint_interval == 0 or finished or stopped_early:
                self.save(step, {"step": step, "finished": finished, "interrupted": stopped_early,
                                 "planned_steps": config.max_steps, "train_loss": train_loss, **summary})  # fmt: skip
        bar.close()
        if stopped_early and context.is_main:
            logger.warning("%s stopped by its time limit (--max-minutes %g) after %d of %d planned steps; saved as "
                           "interrupted: --resume trains on to the end of the plan", self.stage, config.max_minutes,
                           step, config.max_steps)  # fmt: skip
        seconds = time.perf_counter() - started
        return TrainResult(
            steps=step,
            train_loss=train_loss,
            val_loss=summary.get("val_loss", float("nan")),
            val_perplexity=summary.get("val_perplexity", float("nan")),
            val_bits_per_char=summary.get("val_bits_per_char"),
            val_accuracy=summary.get("val_accuracy", float("nan")),
            val_unigram_accuracy=summary.get("val_unigram_accuracy"),
            seconds=seconds,
            tokens_per_second=total_tokens / seconds,
            stopped_early=stopped_early,
            rank_checksums=distributed.check_in_sync(context, self.model),
        )
