"""Checkpoint folders: `config.json` + `model.safetensors` + `tokenizer.json` (+ `train_state.pt` while training).

Weights are safetensors only, and weights that are not finite (NaN, inf) are refused at load. The training state
(optimizer, RNG, step, and a copy of the weights so that resuming never pairs weights and optimizer from different
steps) is one file loaded with `weights_only=True`. Each file must be inside the folder (no symlink out of it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError

from gptdeploy import __version__
from gptdeploy.config import GPTConfig
from gptdeploy.errors import CheckpointError, ConfigError
from gptdeploy.fileio import atomic_write, atomic_write_json, read_format_json
from gptdeploy.paths import inside
from gptdeploy.tokenizer import Tokenizer
from gptdeploy.validation import checked_arguments

if TYPE_CHECKING:
    from gptdeploy.model import GPT

FORMAT = "gptdeploy-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TRAIN_STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.jsonl"  # the training log next to a checkpoint


def checkpoint_file(folder: str | Path, name: str) -> Path:
    """One of a checkpoint's files, which must not lead out of its folder."""
    return inside(folder, name, CheckpointError, "file", "the folder was tampered with: restore the checkpoint")


@dataclass
class Checkpoint:
    path: Path
    model: GPT
    tokenizer: Tokenizer
    info: dict  # everything in config.json besides the model config: stage, step, versions

    @property
    def config(self) -> GPTConfig:
        return self.model.config


def save_checkpoint(
    path: str | Path, model: GPT, tokenizer: Tokenizer, info: dict | None = None, train_state: dict | None = None
) -> Path:
    """Write (or update) a checkpoint folder; each file is replaced atomically and config.json comes last."""
    import torch
    from safetensors.torch import save_model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / WEIGHTS_FILE, lambda tmp: save_model(model, str(tmp), metadata={"format": "pt"}))
    tokenizer.save(path / "tokenizer.json")
    if train_state is not None:
        atomic_write(path / TRAIN_STATE_FILE, lambda tmp: torch.save(train_state, tmp))
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gptdeploy_version": __version__,
        **(info or {}),
        "model": model.config.to_dict(),
    }
    atomic_write_json(path / CONFIG_FILE, config)
    return path


def read_config(path: str | Path) -> tuple[GPTConfig, dict]:
    """The model config and the rest of config.json, after checking format and version."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    config_file = checkpoint_file(path, CONFIG_FILE)
    if not config_file.is_file():
        raise CheckpointError(f"{path} is not a checkpoint: {CONFIG_FILE} is missing")
    data = read_format_json(config_file, FORMAT, FORMAT_VERSION, CheckpointError, "re-create the checkpoint",
                            "checkpoint")  # fmt: skip
    try:
        model_config = GPTConfig.from_dict(data.pop("model"))
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(f"{config_file} has an invalid model config: {error}") from error
    return model_config, data


@checked_arguments(CheckpointError)
def load_checkpoint(path: str | Path, device: str = "cpu") -> Checkpoint:
    """Load a checkpoint folder for inference (model in eval mode)."""
    from safetensors.torch import load_model

    from gptdeploy.model import GPT

    path = Path(path)
    config, info = read_config(path)
    tokenizer = Tokenizer.load(path)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{path}: tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size}"
        )
    weights = checkpoint_file(path, WEIGHTS_FILE)
    if not weights.is_file():
        raise CheckpointError(f"{path} is incomplete: {WEIGHTS_FILE} is missing")
    model = GPT(config)
    try:
        load_model(model, str(weights), strict=True, device=str(device))
    except (SafetensorError, RuntimeError, OSError) as error:
        message = " ".join(str(error).split())[:300]
        raise CheckpointError(f"cannot load weights {weights} ({message}); they do not match {CONFIG_FILE}: restore "
                              "the checkpoint") from error  # fmt: skip
    refuse_non_finite(model.state_dict(), weights)
    return Checkpoint(path=path, model=model.to(device).eval(), tokenizer=tokenizer, info=info)


def refuse_non_finite(tensors: dict, source: str | Path) -> None:
    """Weights with NaN or inf make every output NaN: refuse them where they are loaded, naming the first tensor."""
    import torch

    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: tensor {name} holds {bad} non-finite values (NaN or inf); the weights "
                                  "are corrupt or come from a diverged run: restore or retrain them")  # fmt: skip


def parameter_count(path: str | Path) -> int:
    """Parameters a checkpoint stores, read from its weights file without building the model (a tied head is stored,
    and counted, once)."""
    from safetensors import safe_open

    weights = checkpoint_file(path, WEIGHTS_FILE)
    try:
        with safe_open(str(weights), "numpy") as stored:
            return sum(math.prod(stored.get_slice(name).get_shape()) for name in stored.keys())  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"cannot read weights {weights}: {error}".splitlines()[0]) from error


def load_train_state(path: str | Path) -> dict:
    """The training state saved next to a checkpoint (never unpickles arbitrary objects)."""
    import torch

    state_file = checkpoint_file(path, TRAIN_STATE_FILE)
    if not state_file.is_file():
        raise CheckpointError(f"cannot resume: {state_file} is missing (the run was not checkpointed yet)")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a variety of errors for truncated or foreign files
        raise CheckpointError(f"cannot read training state {state_file}: {error}".splitlines()[0]) from error
    expected = {"step": int, "model": dict, "optimizer": dict, "rng": torch.Tensor}
    state = state if isinstance(state, dict) else {}
    wrong = [key for key, kind in expected.items() if not isinstance(state.get(key), kind)]
    if wrong or isinstance(state["step"], bool) or state["step"] < 0:
        raise CheckpointError(f"{state_file} is not a gptdeploy training state (bad or missing "
                              f"{', '.join(wrong) or 'step'}); resume from a folder gptdeploy train wrote, or start "
                              "over with --force")  # fmt: skip
    return state


def holds_checkpoint(path: str | Path) -> bool:
    """Whether writing a new run to `path` would overwrite a checkpoint (or its metrics)."""
    path = Path(path)
    names = (CONFIG_FILE, WEIGHTS_FILE, TRAIN_STATE_FILE, METRICS_FILE)
    return path.is_dir() and any((path / name).exists() for name in names)
