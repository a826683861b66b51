"""A classification task whose labels can be checked exactly: which kind of paragraph a sentence comes from.

The sentences are drawn from the corpus generators themselves (in the corpus's world), one from inside a paragraph
of each genre, never the opening one, so the label lies in the words and what they are about rather than in a
fixed first phrase. Only `Random.randrange` underlies the draws (through `ChoiceTracker`), so a seed gives the same
examples on every machine; the held-out set is fixed per seed and shares no text with the training set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gptdeploy.corpus.entities import ChoiceTracker
from gptdeploy.corpus.facts import g_nature
from gptdeploy.corpus.stories import g_diary, g_fable, g_recipe, g_sums, g_weather
from gptdeploy.corpus.world import build_world
from gptdeploy.errors import DataError

GENRE_TASK = "shipped genres"  # how a checkpoint records that it was tuned on these
GENRES = {"recipe": g_recipe, "weather": g_weather, "sums": g_sums, "diary": g_diary, "fable": g_fable,
          "nature": g_nature}  # fmt: skip
LABELS = tuple(GENRES)
MAX_HELDOUT_PER_LABEL = 300
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class LabeledText:
    text: str
    label: str

    def to_json(self) -> dict[str, str]:
        return {"text": self.text, "label": self.label}


def _draw(label: str, world, r: ChoiceTracker) -> LabeledText:
    sentences = _SENTENCE_END.split(GENRES[label](world, r))
    inner = sentences[1:] or sentences
    return LabeledText(inner[r.below(len(inner))], label)


def generate_genre_task(
    seed: int = 0, n_train: int = 3000, n_heldout_per_label: int = 100
) -> tuple[list[LabeledText], list[LabeledText]]:
    """(train, held-out) sentences labelled with their genre; the held-out set is drawn first and no training
    sentence repeats one of its texts. Labels are balanced in both."""
    if n_train < 0 or not 0 <= n_heldout_per_label <= MAX_HELDOUT_PER_LABEL:
        raise DataError(f"need n_train >= 0 and 0 <= n_heldout_per_label <= {MAX_HELDOUT_PER_LABEL}, got "
                        f"{n_train} and {n_heldout_per_label}")  # fmt: skip
    world = build_world(ChoiceTracker(0))  # the pretraining corpus's people and towns
    r = ChoiceTracker(1_000_003 + seed)  # other draws than the corpus's own paragraphs
    held: dict[str, LabeledText] = {}
    for label in LABELS:
        wanted = len(held) + n_heldout_per_label
        for _ in range(50 * MAX_HELDOUT_PER_LABEL):
            if len(held) == wanted:
                break
            example = _draw(label, world, r)
            held.setdefault(example.text, example)
    train = []
    for index in range(n_train):
        example = _draw(LABELS[index % len(LABELS)], world, r)
        while example.text in held:
            example = _draw(example.label, world, r)
        train.append(example)
    order = r.shuffled(range(len(train)))
    return [train[i] for i in order], list(held.values())
