"""Fine-tuning tasks whose answers can be checked exactly: adding, sorting letters, finding the largest number.

Exact answers make fine-tuning measurable as plain accuracy on a fixed held-out set. Only
`Random.randrange` is used, so a seed gives the same examples on every machine and Python version.
"""

import random
import string
from dataclasses import dataclass

from gptdeploy.errors import DataError

TASKS = ("add", "sort", "max")
SHIPPED_TASKS = "shipped tasks"  # how a checkpoint records that it was fine-tuned on these
MAX_HELDOUT_PER_TASK = 1000  # well inside the smallest task's space (10,000 additions)

_WORDINGS = {
    "add": ("Q: What is {} plus {}?\nA:", "Q: Add {} and {}.\nA:", "Q: What is the sum of {} and {}?\nA:"),
    "sort": (
        "Q: Sort the letters {}.\nA:",
        "Q: Put the letters {} in alphabetical order.\nA:",
        "Q: Arrange {} alphabetically.\nA:",
    ),
    "max": ("Q: Which is largest: {}?\nA:", "Q: What is the largest of {}?\nA:", "Q: Find the biggest number: {}.\nA:"),
}


@dataclass(frozen=True)
class Example:
    task: str
    prompt: str
    completion: str

    def to_json(self) -> dict[str, str]:
        return {"prompt": self.prompt, "completion": self.completion, "task": self.task}


def _distinct(rng: random.Random, pool: str | range, k: int) -> list:
    items = list(pool)
    return [items.pop(rng.randrange(len(items))) for _ in range(k)]


def _problem(task: str, rng: random.Random) -> tuple[tuple, Example]:
    """One random problem: its identity (the same whatever the wording) and the example."""
    wording = _WORDINGS[task][rng.randrange(len(_WORDINGS[task]))]
    if task == "add":
        x, y = rng.randrange(100), rng.randrange(100)
        return (task, x, y), Example(task, wording.format(x, y), f" {x + y}")
    if task == "sort":
        letters = _distinct(rng, string.ascii_lowercase, 3 + rng.randrange(4))
        return (task, *letters), Example(task, wording.format(" ".join(letters)), " " + " ".join(sorted(letters)))
    numbers = _distinct(rng, range(100), 3 + rng.randrange(3))
    return (task, *numbers), Example(task, wording.format(", ".join(map(str, numbers))), f" {max(numbers)}")


def generate_tasks(
    seed: int = 0, n_train: int = 30_000, n_heldout_per_task: int = 100
) -> tuple[list[Example], list[Example]]:
    """(train, held-out): held-out is a fixed set per seed, and no held-out problem is in train.

    Problems are compared ignoring the wording, which also keeps held-out prompts out of train. Train
    draws with replacement, mixes the tasks evenly and is shuffled.
    """
    if n_train < 0 or not 0 <= n_heldout_per_task <= MAX_HELDOUT_PER_TASK:
        raise DataError(
            f"need n_train >= 0 and 0 <= n_heldout_per_task <= {MAX_HELDOUT_PER_TASK}, "
            f"got {n_train} and {n_heldout_per_task}"
        )
    rng = random.Random(seed)
    held: dict[tuple, Example] = {}
    for task in TASKS:
        wanted = len(held) + n_heldout_per_task
        while len(held) < wanted:
            key, example = _problem(task, rng)
            held.setdefault(key, example)
    train = []
    for i in range(n_train):
        key, example = _problem(TASKS[i % len(TASKS)], rng)
        while key in held:
            key, example = _problem(example.task, rng)
        train.append(example)
    for i in range(len(train) - 1, 0, -1):
        j = rng.randrange(i + 1)
        train[i], train[j] = train[j], train[i]
    return train, list(held.values())


def check_answer(example: Example, generated: str) -> bool:
    """Exact match, ignoring surrounding whitespace."""
    return generated.strip() == example.completion.strip()
