"""Held-out exact-match accuracy: greedy completions from any runtime compared with the expected answers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from gptdeploy.corpus.tasks import Example, check_answer
from gptdeploy.generate import GenerationConfig, generate
from gptdeploy.runtimes.base import Runtime


@dataclass(frozen=True)
class EvalReport:
    accuracy: float
    per_task: dict[str, float]
    completions: list[str]  # one per example, in order

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "per_task": self.per_task, "examples": len(self.completions)}


def exact_match(runtime: Runtime, examples: Sequence[Example], max_new_tokens: int = 16) -> EvalReport:
    """Greedy-decode every prompt (up to eos) and count the answers that match exactly, per task and overall."""
    results = generate(runtime, [e.prompt for e in examples], GenerationConfig(max_new_tokens=max_new_tokens))
    completions = [result.text for result in results]
    hits: dict[str, list[bool]] = defaultdict(list)
    for example, completion in zip(examples, completions, strict=True):
        hits[example.task].append(check_answer(example, completion))
    every = [hit for task_hits in hits.values() for hit in task_hits]
    per_task = {task: sum(task_hits) / len(task_hits) for task, task_hits in sorted(hits.items())}
    return EvalReport(accuracy=sum(every) / len(every), per_task=per_task, completions=completions)
