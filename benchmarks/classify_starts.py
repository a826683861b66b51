"""Which starting point classifies best: an MLM-pretrained encoder, a causal-pretrained decoder, or random weights.

Each start is fine-tuned the same way (same steps, batch, learning rate and seed) on a shipped task and judged on
its fixed held-out set: `facts` (is this statement about a person true? the held-out people never occur in
training, so only what pretraining taught helps; `gptdeploy.corpus.factcheck`) or `genres` (which generator wrote
this sentence; `gptdeploy.corpus.genres`). The random start has the MLM checkpoint's shape and tokenizer with
freshly initialized weights, so it differs from the MLM start only in pretraining.

    python benchmarks/classify_starts.py --mlm runs/mlm --causal runs/causal --task facts --json starts.json
    python benchmarks/classify_starts.py --mlm runs/mlm --causal runs/causal --steps 5     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from gptdeploy.checkpoint import load_checkpoint, save_checkpoint
from gptdeploy.corpus.factcheck import generate_fact_task
from gptdeploy.corpus.genres import generate_genre_task
from gptdeploy.model import GPT
from gptdeploy.stages import CLASSIFY_DEFAULTS, finetune_classifier

TASKS = {"facts": generate_fact_task, "genres": generate_genre_task}


def random_start(mlm: Path, out: Path, seed: int) -> Path:
    checkpoint = load_checkpoint(mlm)
    torch.manual_seed(seed)
    save_checkpoint(out, GPT(checkpoint.config), checkpoint.tokenizer, {"stage": "random init", "objective": "mlm"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlm", type=Path, required=True, help="An MLM-pretrained checkpoint.")
    parser.add_argument("--causal", type=Path, required=True, help="A causal-pretrained checkpoint.")
    parser.add_argument("--task", choices=sorted(TASKS), default="facts")
    parser.add_argument("--steps", type=int, default=CLASSIFY_DEFAULTS.max_steps)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="Write the results here too.")
    args = parser.parse_args()
    config = replace(CLASSIFY_DEFAULTS, max_steps=args.steps, seed=args.seed, eval_interval=args.steps,
                     checkpoint_interval=args.steps)  # fmt: skip
    examples = TASKS[args.task]()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        starts = {"mlm-pretrained": args.mlm, "causal-pretrained": args.causal,
                  "random init": random_start(args.mlm, work / "random", args.seed)}  # fmt: skip
        for name, base in starts.items():
            result = finetune_classifier(base, work / name, examples, config, device="cpu", progress=False)
            rows.append({"start": name, "base": str(base), "heldout_accuracy": result.heldout_accuracy,
                         "val_loss": result.train.val_loss, "seconds": round(result.train.seconds, 1)})  # fmt: skip
    print(
        f"{args.task} task: {len(examples[0])} training sentences, {len(examples[1])} held out, {len(result.labels)} "
        f"labels (chance {1 / len(result.labels):.1%}); {args.steps} steps of batch {config.batch_size}"
    )
    print(f"{'start':<18} {'held-out accuracy':>17} {'val loss':>9} {'seconds':>8}")
    for row in rows:
        print(f"{row['start']:<18} {row['heldout_accuracy']:>17.1%} {row['val_loss']:>9.3f} {row['seconds']:>8.1f}")
    if args.json:
        args.json.write_text(json.dumps({"task": args.task, "steps": args.steps, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
