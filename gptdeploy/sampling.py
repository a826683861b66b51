"""The one sampler every backend shares: same seed + same logits => same tokens, whoever computed the logits.

Processors run in this order on each row's float32 logits (promoted to float64):
  1. repetition penalty: logits of tokens already in the row (prompt included) are divided by the penalty when
     positive and multiplied by it when negative (the CTRL / Hugging Face convention);
  2. temperature: 0 means greedy (argmax, first index on ties) and skips everything below;
  3. top-k: keep the k largest logits;
  4. top-p: keep the smallest set of most likely tokens whose probability reaches p;
  5. min-p: drop tokens less likely than min_p times the most likely one;
  6. draw one token by inverse CDF from the renormalized probabilities with the row's own generator.
Each row has its own generator seeded from (seed, row), where row is the prompt's index in the request, so a
request samples the same tokens however it is split into batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gptdeploy.errors import GenerationError, NonFiniteLogitsError
from gptdeploy.validation import check_field_types, check_ranges


def setting(default: object, help: str, **cli: object) -> object:
    """A dataclass field with the help text its command-line option shows (`cli` overrides the option's form)."""
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True, kw_only=True)
class SamplingParams:
    """How the next token is chosen: the one declaration the API, the CLI options and the C API all read."""

    temperature: float = setting(0.0, "0 = greedy.")
    top_k: int = setting(0, "Keep the k most likely tokens (0 = off).")
    top_p: float = setting(1.0, "Nucleus sampling mass (1 = off).")
    min_p: float = setting(0.0, "Drop tokens below min_p x the most likely (0 = off).")
    repetition_penalty: float = setting(1.0, "> 1 discourages repeats (1 = off).")
    seed: int = setting(0, "Sampling seed (>= 0).")

    def __post_init__(self) -> None:
        check_field_types(self, GenerationError, "sampling")
        check_ranges([
            (self.temperature >= 0, f"temperature must be >= 0 (0 = greedy), got {self.temperature}"),
            (self.top_k >= 0, f"top_k must be >= 0 (0 = off), got {self.top_k}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (0 <= self.min_p < 1, f"min_p must be in [0, 1), got {self.min_p}"),
            (self.repetition_penalty > 0, f"repetition_penalty must be > 0, got {self.repetition_penalty}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
        ], GenerationError)  # fmt: skip

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def penalize_repeats(logits: np.ndarray, previous: Sequence[int], penalty: float) -> np.ndarray:
    seen = np.unique(np.asarray(previous, dtype=np.int64))
    seen = seen[(seen >= 0) & (seen < len(logits))]
    logits = logits.copy()
    values = logits[seen]
    logits[seen] = np.where(values > 0, values / penalty, values * penalty)
    return logits


def token_probabilities(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """Steps 3-5 above on temperature-scaled logits: the distribution a token is drawn from."""
    logits = logits / params.temperature
    if 0 < params.top_k < len(logits):
        kth_largest = np.partition(logits, -params.top_k)[-params.top_k]
        logits = np.where(logits < kth_largest, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if params.top_p < 1:
        order = np.argsort(-probs, kind="stable")
        before = np.cumsum(probs[order]) - probs[order]  # mass of the more likely tokens
        drop = order[before >= params.top_p]
        probs[drop] = 0.0
    if params.min_p > 0:
        probs = np.where(probs < params.min_p * probs.max(), 0.0, probs)
    return probs / probs.sum()


class Sampler:
    """Picks the next token of each row; holds one seeded generator per row of the original batch."""

    def __init__(self, params: SamplingParams, rows: Sequence[int]):
        self.params = params
        self.generators = {row: np.random.default_rng([params.seed, row]) for row in rows}

    def sample(
        self, logits: np.ndarray, rows: Sequence[int], histories: Sequence[Sequence[int]] | None = None
    ) -> list[int]:
        """logits (len(rows), vocab) for the given rows; histories (prompt + generated tokens of each row) are
        needed only for the repetition penalty."""
        tokens = []
        for position, (row_logits, row) in enumerate(zip(logits, rows, strict=True)):
            if not np.isfinite(row_logits).all():
                raise NonFiniteLogitsError(f"the model produced {int((~np.isfinite(row_logits)).sum())} non-finite "
                                           "logits (NaN or inf): its weights are broken or its precision overflows; "
                                           "check it with `gptdeploy parity`")  # fmt: skip
            row_logits = row_logits.astype(np.float64)
            if self.params.repetition_penalty != 1:
                row_logits = penalize_repeats(row_logits, histories[position], self.params.repetition_penalty)
            if self.params.greedy:
                tokens.append(int(np.argmax(row_logits)))
                continue
            cumulative = np.cumsum(token_probabilities(row_logits, self.params))
            draw = self.generators[row].random() * cumulative[-1]
            tokens.append(int(min(np.searchsorted(cumulative, draw, side="right"), len(cumulative) - 1)))
        return tokens
