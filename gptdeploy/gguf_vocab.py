"""A byte-level BPE `tokenizer.json` as GGUF vocabulary metadata (llama.cpp's "gpt2" tokenizer model).

llama.cpp does not run a tokenizer.json: it re-implements a fixed set of pre-tokenizers and picks one by the name in
`tokenizer.ggml.pre`. The names below are the ones whose splitting equals a tokenizer.json pre-tokenizer exactly:
- "smollm": individual digits, then GPT-2's byte-level regex, and no space clean-up when decoding. That is
  gptdeploy's own tokenizer (Digits(individual_digits) + ByteLevel), the Llama convention for digits that SmolLM
  and StarCoder share.
- "gpt-2": GPT-2's byte-level regex alone (GPT-2 folders and the byte-level BPE tokenizers most tools train).
- "qwen2" and "llama-bpe": the Split regexes of Qwen2/Qwen2.5/Qwen3 and of Llama 3 before a regex-free ByteLevel.
Any other tokenizer (SentencePiece-style ones with byte fallback, other regexes) is refused by name rather than
written with a pre-tokenizer that splits text differently.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from gptdeploy.errors import TokenizerError
from gptdeploy.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

# Split patterns as they appear in tokenizer.json (facts about those tokenizers), and the llama.cpp name for each.
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
                 r"|\s+(?!\S)|\s+")  # fmt: skip
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")  # fmt: skip
SPLIT_PATTERNS = {QWEN2_PATTERN: "qwen2", LLAMA3_PATTERN: "llama-bpe"}
NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5  # gguf.TokenType values


@dataclass(frozen=True)
class GgufVocab:
    pre: str  # tokenizer.ggml.pre
    tokens: list[str]  # one per model row: the tokenizer's, then padding up to the model's vocabulary
    token_types: list[int]
    merges: list[str]  # "left right", in priority order
    bos_id: int
    eos_id: int
    pad_id: int


def gguf_vocab(tokenizer: Tokenizer, vocab_size: int) -> GgufVocab:
    """The GGUF vocabulary of `tokenizer` for a model with `vocab_size` rows (extra rows become unused tokens)."""
    spec = json.loads(tokenizer.backend.to_str())
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        fallback = " with byte fallback (SentencePiece-style)" if model.get("byte_fallback") else ""
        raise TokenizerError(f"GGUF export writes byte-level BPE tokenizers; this one is {model.get('type')}"
                             f"{fallback}: convert `gptdeploy export-hf` output with llama.cpp's "
                             "convert_hf_to_gguf.py instead")  # fmt: skip
    pre = pre_tokenizer_name(spec)
    ignore_merges = bool(model.get("ignore_merges"))
    if ignore_merges != (pre == "llama-bpe"):  # llama.cpp ties this to the pre-tokenizer
        raise TokenizerError(f"the tokenizer's BPE has ignore_merges={ignore_merges}, which llama.cpp's {pre!r} "
                             "pre-tokenizer does not; GGUF export would tokenize differently")  # fmt: skip
    added = {token["id"]: token for token in spec.get("added_tokens", [])}
    by_id = {index: text for text, index in model["vocab"].items()} | {i: t["content"] for i, t in added.items()}
    if sorted(by_id) != list(range(len(by_id))):
        raise TokenizerError("the tokenizer's ids are not contiguous from 0; GGUF needs one token per id")
    if len(by_id) > vocab_size:
        raise TokenizerError(f"the tokenizer has {len(by_id)} tokens but the model only {vocab_size} rows")
    tokens = [by_id[i] for i in range(len(by_id))] + [f"[PAD{i}]" for i in range(len(by_id), vocab_size)]
    types = [_token_type(added.get(i)) for i in range(len(by_id))] + [UNUSED] * (vocab_size - len(by_id))
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model.get("merges", [])]
    return GgufVocab(pre, tokens, types, merges, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)


def _token_type(added: dict | None) -> int:
    if added is None:
        return NORMAL
    return CONTROL if added.get("special") else USER_DEFINED


def pre_tokenizer_name(spec: dict) -> str:
    """llama.cpp's name for the pre-tokenizer of a parsed tokenizer.json; TokenizerError when none splits alike."""
    normalizer = spec.get("normalizer")
    if normalizer is not None and normalizer.get("type") != "NFC":
        raise TokenizerError(f"the tokenizer normalizes text ({normalizer.get('type')}), which llama.cpp's byte-level "
                             "BPE does not; GGUF export cannot keep its tokenization")  # fmt: skip
    if normalizer is not None:
        logger.warning("the tokenizer NFC-normalizes text and llama.cpp does not: text that is not already NFC "
                       "tokenizes differently there")  # fmt: skip
    steps = _pre_steps(spec.get("pre_tokenizer"))
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and _byte_level(steps[-1], regex=True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and _byte_level(steps[1], regex=True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and _byte_level(steps[1], regex=False):
        split = steps[0]
        pattern = (split.get("pattern") or {}).get("Regex")
        if pattern in SPLIT_PATTERNS and split.get("behavior") == "Isolated" and not split.get("invert"):
            return SPLIT_PATTERNS[pattern]
    raise TokenizerError(f"the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) matches none that "
                         "llama.cpp implements (gpt-2, smollm, qwen2, llama-bpe); GGUF export would split text "
                         "differently, so it is refused")  # fmt: skip


def _pre_steps(pre: dict | None) -> list[dict]:
    if pre is None:
        return []
    if pre.get("type") == "Sequence":
        return [step for inner in pre.get("pretokenizers", []) for step in _pre_steps(inner)]
    return [pre]


def _byte_level(step: dict, regex: bool) -> bool:
    return step.get("type") == "ByteLevel" and not step.get("add_prefix_space") and step.get("use_regex", True) == regex
