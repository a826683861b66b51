"""Training data: text corpora and prompt/completion pairs, tokenized and cut into batches.

Batch `index` alone decides what a batch holds (the RNG is seeded from it), so a resumed or multi-process run
sees exactly the batches an uninterrupted single run would.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from gptdeploy.corpus.tasks import Example
from gptdeploy.errors import DataError
from gptdeploy.tokenizer import Tokenizer

IGNORE_INDEX = -100  # targets with this value do not count in the loss (prompt tokens, padding)
TEXT_SUFFIXES = (".txt", ".md", ".txt.gz")


@dataclass(frozen=True)
class Batch:
    inputs: Tensor  # (B, T) token ids
    targets: Tensor  # (B, T) token ids to predict (IGNORE_INDEX where no loss is taken), or (B,) class labels
    tokens: int  # real (non-padding) input tokens, for throughput
    attention_mask: Tensor | None = None  # (B, T), 1 for real tokens; None: all real (or padding never looked at)


def _read_text_file(path: Path) -> str:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        return raw.decode("utf-8")
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start}); convert it to UTF-8") from error


def read_documents(sources: Sequence[str | Path]) -> list[str]:
    """Documents (blank-line separated paragraphs) from text files and folders of .txt/.md/.txt.gz files."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
            if not found:
                raise DataError(f"folder {source} has no text files ({', '.join(TEXT_SUFFIXES)})")
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise DataError(f"training text {source} does not exist")
    documents = [doc.strip() for path in files for doc in _read_text_file(path).split("\n\n")]
    documents = [doc for doc in documents if doc]
    if not documents:
        raise DataError(f"no text found in {', '.join(map(str, sources))}")
    return documents


def read_pairs(path: str | Path) -> list[Example]:
    """Prompt/completion pairs from JSONL: one `{"prompt": ..., "completion": ...}` object per line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"fine-tuning file {path} does not exist")
    examples = []
    for number, line in enumerate(_read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path} line {number}: not valid JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected an object with 'prompt' and 'completion'")
        prompt, completion = record.get("prompt"), record.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str) or not prompt or not completion:
            raise DataError(f"{path} line {number}: 'prompt' and 'completion' must be non-empty strings")
        examples.append(Example(task=str(record.get("task", "custom")), prompt=prompt, completion=completion))
    if not examples:
        raise DataError(f"{path} has no examples")
    return examples


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + index)


class PretrainData:
    """Random windows of `block_size` tokens from the documents, each started by bos and ended by eos."""

    def __init__(
        self,
        documents: Sequence[str],
        tokenizer: Tokenizer,
        block_size: int,
        batch_size: int,
        seed: int = 0,
        val_fraction: float = 0.05,
    ):
        n_val = max(1, int(len(documents) * val_fraction))
        if len(documents) < 2:
            raise DataError("need at least 2 documents (paragraphs separated by a blank line) to hold some out")
        train_docs, val_docs = documents[:-n_val], documents[-n_val:]
        self.train_tokens = self._encode(train_docs, tokenizer)
        self.val_tokens = self._encode(val_docs, tokenizer)
        self.val_chars = sum(len(doc) for doc in val_docs)
        for name, tokens in (("training", self.train_tokens), ("validation", self.val_tokens)):
            if len(tokens) <= block_size:
                raise DataError(
                    f"the {name} text has {len(tokens)} tokens, fewer than one block of {block_size}; "
                    "add text or lower block_size"
                )
        self.block_size, self.batch_size, self.seed = block_size, batch_size, seed

    @staticmethod
    def _encode(documents: Sequence[str], tokenizer: Tokenizer) -> Tensor:
        ids = [token for doc in tokenizer.encode_batch(list(documents), bos=True) for token in (*doc, tokenizer.eos_id)]
        return torch.tensor(ids, dtype=torch.long)

    def _windows(self, tokens: Tensor, starts: Tensor) -> Batch:
        offsets = starts[:, None] + torch.arange(self.block_size + 1)  # (B, T + 1)
        window = tokens[offsets]
        return Batch(window[:, :-1], window[:, 1:], window[:, :-1].numel())

    def batch(self, index: int) -> Batch:
        high = len(self.train_tokens) - self.block_size - 1
        starts = torch.randint(0, high + 1, (self.batch_size,), generator=_generator(self.seed, index))
        return self._windows(self.train_tokens, starts)

    def val_batches(self, max_batches: int) -> list[Batch]:
        """Non-overlapping windows spread over the held-out text, the same every time."""
        starts = torch.arange(0, len(self.val_tokens) - self.block_size, self.block_size)
        step = max(1, len(starts) // (max_batches * self.batch_size))
        starts = starts[::step][: max_batches * self.batch_size]
        return [self._windows(self.val_tokens, chunk) for chunk in starts.split(self.batch_size)]

    @property
    def val_chars_per_token(self) -> float | None:
        return self.val_chars / len(self.val_tokens)

    unigram_token: int | None = None  # a masked language model's baseline: the most frequent token


class MaskedPretrainData(PretrainData):
    """The same windows for a masked language model (BERT's recipe): a share `mask_rate` of the non-special tokens
    is selected, 80% of those become `<|mask|>`, 10% a random token and 10% stay; the loss is on the selected ones.

    Every batch index draws new masks (dynamic masking: a window seen again in a later epoch is masked anew); the
    validation masks are the same every time, so validation numbers compare across steps.
    """

    def __init__(self, documents: Sequence[str], tokenizer: Tokenizer, block_size: int, batch_size: int,
                 seed: int = 0, mask_rate: float = 0.15, val_fraction: float = 0.05):  # fmt: skip
        if tokenizer.mask_id is None:
            raise DataError("the tokenizer has no <|mask|> token; train the model with --objective mlm from scratch")
        if not 0 < mask_rate < 1:
            raise DataError(f"mask rate must be in (0, 1), got {mask_rate}")
        super().__init__(documents, tokenizer, block_size, batch_size, seed, val_fraction)
        self.mask_rate, self.mask_id, self.vocab_size = mask_rate, tokenizer.mask_id, tokenizer.vocab_size
        self.special_ids = torch.tensor(sorted(tokenizer.special_ids))
        counts = torch.bincount(self.train_tokens, minlength=tokenizer.vocab_size)
        counts[self.special_ids] = 0
        self.unigram_token = int(counts.argmax())  # the unigram model's prediction for every masked token

    val_chars_per_token = None  # the loss covers the masked tokens only: not a rate of the whole text

    def _windows(self, tokens: Tensor, starts: Tensor) -> Batch:
        offsets = starts[:, None] + torch.arange(self.block_size)  # (B, T)
        return Batch(tokens[offsets], tokens[offsets], starts.numel() * self.block_size)

    def batch(self, index: int) -> Batch:
        return self._mask(super().batch(index).inputs, _generator(self.seed + 1, index))

    def val_batches(self, max_batches: int) -> list[Batch]:
        return [self._mask(batch.inputs, _generator(-1, index))
                for index, batch in enumerate(super().val_batches(max_batches))]  # fmt: skip

    def _mask(self, tokens: Tensor, generator: torch.Generator) -> Batch:
        selectable = ~torch.isin(tokens, self.special_ids)
        selected = selectable & (torch.rand(tokens.shape, generator=generator) < self.mask_rate)
        choice = torch.rand(tokens.shape, generator=generator)
        random_tokens = torch.randint(0, self.vocab_size, tokens.shape, generator=generator)
        inputs = torch.where(selected & (choice < 0.8), self.mask_id, tokens)
        inputs = torch.where(selected & (choice >= 0.8) & (choice < 0.9), random_tokens, inputs)
        targets = torch.where(selected, tokens, IGNORE_INDEX)
        return Batch(inputs, targets, tokens.numel())


class FinetuneData:
    """Prompt/completion pairs as bos + prompt + completion + eos, with the loss on completion and eos only."""

    def __init__(
        self,
        train: Sequence[Example],
        val: Sequence[Example],
        tokenizer: Tokenizer,
        block_size: int,
        batch_size: int,
        seed: int = 0,
    ):
        self.pad_id = tokenizer.pad_id
        self.train = self._encode(train, tokenizer, block_size)
        self.val = self._encode(val, tokenizer, block_size)
        self.batch_size, self.seed = batch_size, seed
        self._order: tuple[int, Tensor] = (-1, torch.empty(0))

    @staticmethod
    def _encode(examples: Sequence[Example], tokenizer: Tokenizer, block_size: int) -> list[tuple[Tensor, Tensor]]:
        if not examples:
            raise DataError("no fine-tuning examples")
        prompts = tokenizer.encode_batch([e.prompt for e in examples], bos=True)
        completions = tokenizer.encode_batch([e.completion for e in examples])
        encoded = []
        for number, (prompt, completion) in enumerate(zip(prompts, completions, strict=True), start=1):
            sequence = torch.tensor([*prompt, *completion, tokenizer.eos_id])
            if len(sequence) - 1 > block_size:
                raise DataError(
                    f"example {number} has {len(sequence)} tokens, more than the context of {block_size}; "
                    "shorten it or train with a larger block_size"
                )
            targets = sequence[1:].clone()
            targets[: len(prompt) - 1] = IGNORE_INDEX
            encoded.append((sequence[:-1], targets))
        return encoded

    def _collate(self, items: Sequence[tuple[Tensor, Tensor]]) -> Batch:
        width = max(len(inputs) for inputs, _ in items)
        inputs = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        targets = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        for row, (x, y) in enumerate(items):  # right padding: causal attention never looks ahead at it
            inputs[row, : len(x)], targets[row, : len(y)] = x, y
        return Batch(inputs, targets, sum(len(x) for x, _ in items))

    def batch(self, index: int) -> Batch:
        """Batch `index` of an endless sequence of shuffled epochs."""
        first = index * self.batch_size
        items = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, len(self.train))
            items.append(self.train[self._epoch_order(epoch)[offset]])
        return self._collate(items)

    def _epoch_order(self, epoch: int) -> Tensor:
        if self._order[0] != epoch:
            self._order = (epoch, torch.randperm(len(self.train), generator=_generator(self.seed, epoch)))
        return self._order[1]

    def val_batches(self, max_batches: int) -> list[Batch]:
        chunks = [self.val[i : i + self.batch_size] for i in range(0, len(self.val), self.batch_size)]
        return [self._collate(chunk) for chunk in chunks[:max_batches]]

    val_chars_per_token = None  # bits per character only mean something for running text
    unigram_token = None
