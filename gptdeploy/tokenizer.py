"""Byte-level BPE tokenizer trained in-repo with Hugging Face `tokenizers`, stored as `tokenizer.json`.

Byte-level means every UTF-8 string round-trips exactly (no unknown token). Digits are split one per token, which
makes arithmetic learnable for small models (the Llama convention).

`tokenizer_config.json` next to `tokenizer.json` (the file and keys Hugging Face itself uses, since `tokenizer.json`
has no place for them) names the bos / eos / pad roles and holds the chat template: the Jinja text that turns a
conversation into a prompt (`gptdeploy.chat_template` renders it). Ours is the fine-tuning format below; a model
imported from Hugging Face keeps its own. A folder without the file has our special tokens and template.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import AddedToken, decoders, models, pre_tokenizers, processors, trainers
from tokenizers import Tokenizer as BackendTokenizer

from gptdeploy.errors import GenerationError, TokenizerError
from gptdeploy.fileio import atomic_write_json, atomic_write_text
from gptdeploy.paths import inside

TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_FILE = "tokenizer_config.json"  # Hugging Face's name for the file that names the special tokens
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # where newer transformers versions keep the template instead
BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
MASK = "<|mask|>"  # what a masked language model predicts; only in tokenizers trained for one
SPECIAL_TOKENS = [PAD, BOS, EOS]
# The fine-tuning format (`Q: ...\nA: answer<eos>`, see samples/finetune) as a chat template in Hugging Face's
# convention: a system message is a leading line, each user turn a `Q:` line, each answer follows `A:` and ends
# with eos; `add_generation_prompt` leaves the `A:` open for the model to answer.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}Q: {{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}A: {{ message['content'] | trim }}{{ eos_token }}"
    "{% else %}{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)


class Tokenizer:
    """Text <-> token ids, with the bos/eos/pad ids every other module needs."""

    def __init__(
        self,
        backend: BackendTokenizer,
        bos: str = BOS,
        eos: str = EOS,
        pad: str = PAD,
        chat_template: str = DEFAULT_CHAT_TEMPLATE,
    ):
        self.backend = backend
        self.special_tokens = {"bos": bos, "eos": eos, "pad": pad}  # role -> token text
        self.chat_template = chat_template
        ids = {token: backend.token_to_id(token) for token in (pad, bos, eos)}
        missing = [token for token, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks special tokens {missing}; retrain it with gptdeploy")
        self.pad_id, self.bos_id, self.eos_id = ids[pad], ids[bos], ids[eos]
        self.mask_id: int | None = backend.token_to_id(MASK)  # None: not a masked-language-model tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, mask: bool = False) -> Tokenizer:
        """Learn merges from `texts` until the vocabulary (256 bytes + specials + merges) has `vocab_size`; `mask`
        adds the `<|mask|>` token a masked language model needs."""
        # lstrip: the mask takes the space before it, as the word it stands for (" Riverton") does
        special_tokens = [*SPECIAL_TOKENS, AddedToken(MASK, special=True, lstrip=True)] if mask else SPECIAL_TOKENS
        minimum = 256 + len(special_tokens)
        if vocab_size <= minimum:
            raise TokenizerError(f"vocab_size must exceed {minimum} (bytes + special tokens), got {vocab_size}")
        backend = BackendTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
        )
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=special_tokens,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load `tokenizer.json`, or the one inside a checkpoint or bundle folder."""
        path = Path(path)
        folder, name = (path, TOKENIZER_FILE) if path.is_dir() else (path.parent, path.name)
        fix = "the folder was tampered with: restore its tokenizer"
        path = inside(folder, name, TokenizerError, "tokenizer", fix)
        special = inside(folder, SPECIAL_TOKENS_FILE, TokenizerError, "special-token file", fix)
        if not path.is_file():
            raise TokenizerError(f"no tokenizer at {path}; train one first (gptdeploy train writes it)")
        try:
            backend = BackendTokenizer.from_file(str(path))
        except Exception as error:  # the Rust library raises plain Exceptions for malformed files
            raise TokenizerError(f"cannot read tokenizer {path}: {error}".splitlines()[0]) from error
        return cls(backend, **read_tokenizer_config(special))

    def save(self, path: str | Path) -> Path:
        """Write `tokenizer.json` and `tokenizer_config.json` (special tokens, chat template) beside it."""
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_FILE
        atomic_write_text(path, self.backend.to_str())
        atomic_write_json(path.parent / SPECIAL_TOKENS_FILE, self.special_tokens_config())
        return path

    def save_for_interchange(self, folder: str | Path) -> list[Path]:
        """Write the tokenizer as other tools read it (transformers, onnxruntime-genai): `tokenizer_config.json`
        naming the special tokens, and a `tokenizer.json` whose post-processor puts bos first when a tool adds
        special tokens, so it encodes a prompt to the ids `generate` feeds the model. An imported tokenizer keeps the
        post-processor it came with."""
        backend = BackendTokenizer.from_str(self.backend.to_str())  # a copy: this tokenizer is unchanged
        if backend.post_processor is None:
            bos = self.special_tokens["bos"]
            backend.post_processor = processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A $B", special_tokens=[(bos, self.bos_id)]
            )
        folder = Path(folder)
        return [atomic_write_text(folder / TOKENIZER_FILE, backend.to_str()),
                atomic_write_json(folder / SPECIAL_TOKENS_FILE, self.special_tokens_config())]  # fmt: skip

    def special_tokens_config(self) -> dict:
        """The special tokens and chat template in Hugging Face's `tokenizer_config.json` form (transformers and
        onnxruntime-genai read it too)."""
        roles = self.special_tokens
        return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": roles["bos"], "eos_token": roles["eos"],
                "pad_token": roles["pad"], "clean_up_tokenization_spaces": False,
                "chat_template": self.chat_template}  # fmt: skip

    @property
    def special_ids(self) -> set[int]:
        """Ids of every special token (pad, bos, eos, mask): never masked, never predicted by fill-mask."""
        return {self.pad_id, self.bos_id, self.eos_id} | ({self.mask_id} if self.mask_id is not None else set())

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str, bos: bool = False) -> list[int]:
        ids = self.backend.encode(check_text(text), add_special_tokens=False).ids
        return [self.bos_id, *ids] if bos else ids

    def encode_batch(self, texts: list[str], bos: bool = False) -> list[list[int]]:
        encodings = self.backend.encode_batch([check_text(text) for text in texts], add_special_tokens=False)
        return [[self.bos_id, *e.ids] if bos else e.ids for e in encodings]

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special)


def check_text(text: object) -> str:
    """Text as the tokenizer takes it: a str that is valid Unicode. Bytes that were not UTF-8 reach Python as lone
    surrogates (command-line arguments, files read with errors="surrogateescape"), which no encoder can take."""
    if not isinstance(text, str):
        raise GenerationError(f"text must be a str, got {type(text).__name__} {text!r:.60}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise GenerationError(f"text is not valid UTF-8: character {error.start} (after "
                              f"{text[max(0, error.start - 20) : error.start]!r}) is the lone surrogate "
                              f"U+{ord(text[error.start]):04X}, an undecodable input byte; pass UTF-8 text"
                              ) from None  # fmt: skip
    return text


def read_tokenizer_config(path: Path, template_file: Path | None = None) -> dict[str, str]:
    """The `Tokenizer` arguments a Hugging Face `tokenizer_config.json` holds: bos / eos / pad token texts and the
    chat template; none (ours) when there is no file. `template_file`: a `chat_template.jinja`, where newer
    transformers versions keep the template, read when the config holds none.

    A missing bos or pad falls back to eos, as GPT-2 does (its one `<|endoftext|>` serves all three).
    """
    data = _read_json(path) if path.is_file() else None
    template = _chat_template(data, path)
    if template is None and template_file is not None and template_file.is_file():
        template = template_file.read_text(encoding="utf-8")
    found = {"chat_template": template} if template else {}
    if data is None:
        return found
    roles = {role: _token_text(data.get(f"{role}_token")) if isinstance(data, dict) else None
             for role in ("bos", "eos", "pad")}  # fmt: skip
    if roles["eos"] is None:
        raise TokenizerError(f"{path} names no eos_token; add one so generation knows where text ends")
    return {**{role: text or roles["eos"] for role, text in roles.items()}, **found}


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TokenizerError(f"cannot read {path}: {error}") from error


def _chat_template(data: object, path: Path) -> str | None:
    """A Hugging Face `chat_template`: one text, or a list of named ones of which "default" (else the first) is the
    one for plain chat."""
    template = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default", next(iter(named.values()), None))
    if template is not None and not (isinstance(template, str) and template.strip()):
        raise TokenizerError(f"{path}: chat_template must be non-empty Jinja text, got {template!r:.60}")
    return template


def _token_text(value: object) -> str | None:
    """A special token as Hugging Face writes it: the text, or an AddedToken dict with a "content" key."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None
