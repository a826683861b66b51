"""Sequence classification data: `{"text": ..., "label": ...}` lines, tokenized and batched for the training loop.

A batch holds bos + text, right-padded, with an attention mask (the encoder must not look at padding) and one
label index per sequence; the loop's loss and accuracy take a (B,) target as one class per sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from gptdeploy.corpus.genres import LabeledText
from gptdeploy.data import Batch, _generator, _read_text_file
from gptdeploy.encoder import encode_texts
from gptdeploy.errors import DataError
from gptdeploy.tokenizer import Tokenizer


def read_labeled(path: str | Path) -> list[LabeledText]:
    """Labelled texts from JSONL: one `{"text": ..., "label": ...}` object per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"classification file {path} does not exist")
    examples = []
    for number, line in enumerate(_read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number}: not valid JSON ({error.msg})") from error
        text, label = (record.get("text"), record.get("label")) if isinstance(record, dict) else (None, None)
        if not isinstance(text, str) or not isinstance(label, str) or not text or not label:
            raise DataError(f"{path} line {number}: expected an object whose 'text' and 'label' are non-empty strings")
        examples.append(LabeledText(text, label))
    if not examples:
        raise DataError(f"{path} has no examples")
    return examples


def label_names(train: Sequence[LabeledText], heldout: Sequence[LabeledText]) -> list[str]:
    """The classes, sorted; a held-out label never seen in training is an error (the head could never say it)."""
    labels = sorted({example.label for example in train})
    unseen = sorted({example.label for example in heldout} - set(labels))
    if len(labels) < 2:
        raise DataError(f"classification needs at least 2 labels in the training data, found {labels}")
    if unseen:
        raise DataError(f"held-out labels {unseen} never occur in the training data")
    return labels


class ClassifyData:
    """Labelled texts in shuffled epochs (batch `index` alone decides its content, as for the other data)."""

    val_chars_per_token = None
    unigram_token = None

    def __init__(self, train: Sequence[LabeledText], val: Sequence[LabeledText], labels: Sequence[str],
                 tokenizer: Tokenizer, block_size: int, batch_size: int, seed: int = 0):  # fmt: skip
        self.index = {label: i for i, label in enumerate(labels)}
        self.train, self.val = list(train), list(val)
        self.tokenizer, self.block_size, self.batch_size, self.seed = tokenizer, block_size, batch_size, seed
        self._order: tuple[int, Tensor] = (-1, torch.empty(0))

    def _collate(self, items: Sequence[LabeledText]) -> Batch:
        inputs, mask = map(
            torch.from_numpy, encode_texts(self.tokenizer, [item.text for item in items], self.block_size)
        )
        targets = torch.tensor([self.index[item.label] for item in items])
        return Batch(inputs, targets, int(mask.sum()), mask)

    def batch(self, index: int) -> Batch:
        items = []
        for position in range(index * self.batch_size, (index + 1) * self.batch_size):
            epoch, offset = divmod(position, len(self.train))
            if self._order[0] != epoch:
                self._order = (epoch, torch.randperm(len(self.train), generator=_generator(self.seed, epoch)))
            items.append(self.train[int(self._order[1][offset])])
        return self._collate(items)

    def val_batches(self, max_batches: int) -> list[Batch]:
        """Every held-out example (accuracy is reported over the whole set, whatever eval_batches says)."""
        return [self._collate(self.val[i : i + self.batch_size]) for i in range(0, len(self.val), self.batch_size)]
