"""Loss curves from one or more runs' metrics.jsonl, drawn to a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gptdeploy.checkpoint import METRICS_FILE
from gptdeploy.errors import DataError
from gptdeploy.fileio import atomic_write
from gptdeploy.train import read_metrics as read_records


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise DataError(f"{run_dir} has no {METRICS_FILE}; is it a training output folder?")
    return read_records(path)


def plot_losses(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Training and validation loss against step, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.5))
    for color, run_dir in enumerate(run_dirs):
        records = read_metrics(run_dir)
        train = [(r["step"], r["train_loss"]) for r in records if "train_loss" in r]
        val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
        name = Path(run_dir).name
        if train:
            axis.plot(*zip(*train, strict=True), color=f"C{color}", alpha=0.6, label=f"{name} train")
        if val:
            axis.plot(*zip(*val, strict=True), f"C{color}o--", label=f"{name} validation")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("cross-entropy (nats/token)")
    axis.set_yscale("log")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    atomic_write(out, lambda tmp: figure.savefig(tmp, format="png", dpi=120))
    plt.close(figure)
    return Path(out)
