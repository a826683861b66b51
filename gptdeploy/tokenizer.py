"""Byte-level BPE tokenizer trained in-repo with Hugging Face `tokenizers`, stored as `tokenizer.json`.

Byte-level means every UTF-8 string round-trips exactly (no unknown token). Digits are split one per token, which
makes arithmetic learnable for small models (the Llama convention).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from gptdeploy.errors import TokenizerError
from gptdeploy.fileio import atomic_write_text

TOKENIZER_FILE = "tokenizer.json"
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
SPECIAL_TOKENS = [PAD, BOS, EOS]


class Tokenizer:
    """Text <-> token ids, with the bos/eos/pad ids every other module needs."""

    def __init__(self, backend: BackendTokenizer):
        self.backend = backend
        ids = {token: backend.token_to_id(token) for token in SPECIAL_TOKENS}
        missing = [token for token, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks special tokens {missing}; retrain it with gptdeploy")
        self.pad_id, self.bos_id, self.eos_id = ids[PAD], ids[BOS], ids[EOS]

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> Tokenizer:
        """Learn merges from `texts` until the vocabulary (256 bytes + specials + merges) has `vocab_size`."""
        minimum = 256 + len(SPECIAL_TOKENS)
        if vocab_size <= minimum:
            raise TokenizerError(f"vocab_size must exceed {minimum} (bytes + special tokens), got {vocab_size}")
        backend = BackendTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load `tokenizer.json`, or the one inside a checkpoint or bundle folder."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        if not path.is_file():
            raise TokenizerError(f"no tokenizer at {path}; train one first (gptdeploy train writes it)")
        try:
            return cls(BackendTokenizer.from_file(str(path)))
        except Exception as error:  # the Rust library raises plain Exceptions for malformed files
            raise TokenizerError(f"cannot read tokenizer {path}: {error}") from error

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        atomic_write_text(path, self.backend.to_str())
        return path

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str, bos: bool = False) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if bos else ids

    def encode_batch(self, texts: list[str], bos: bool = False) -> list[list[int]]:
        encodings = self.backend.encode_batch(texts, add_special_tokens=False)
        return [[self.bos_id, *e.ids] if bos else e.ids for e in encodings]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special)
