"""Hugging Face folders (GPT-2, Llama, Mistral, Qwen2, Qwen3, Phi-3) -> gptdeploy checkpoints.

A folder is read the way transformers writes it (config.json, model.safetensors or sharded safetensors with an
index, tokenizer.json + tokenizer_config.json) without importing transformers. Every config field that changes what
the model computes is either mapped onto `GPTConfig` or refused with a message that names it (`hf_config`); every
tensor in the folder must land somewhere in the model (`hf_tensors`), so a checkpoint with parts we do not
understand is refused, not truncated. Pickled `pytorch_model.bin` files are never opened.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from gptdeploy.config import GPTConfig
from gptdeploy.errors import CheckpointError, GptDeployError, TokenizerError
from gptdeploy.fileio import replace_folder, staging_folder
from gptdeploy.hf_config import hf_family, hf_to_config
from gptdeploy.hf_tensors import gather
from gptdeploy.paths import inside
from gptdeploy.tokenizer import (
    CHAT_TEMPLATE_FILE,
    SPECIAL_TOKENS_FILE,
    TOKENIZER_FILE,
    Tokenizer,
    read_tokenizer_config,
)
from gptdeploy.validation import checked_arguments

logger = logging.getLogger(__name__)

SAFETENSORS_FILE, SAFETENSORS_INDEX = "model.safetensors", "model.safetensors.index.json"


@dataclass(frozen=True)
class ImportResult:
    checkpoint: Path
    family: str  # gpt2 | llama | mistral | qwen2 | qwen3 | phi3
    config: GPTConfig
    parameters: int
    source_dtype: str  # the dtype the folder stored (weights are converted to float32)


@checked_arguments(CheckpointError)
def import_hf(
    folder: str | Path, checkpoint: str | Path, block_size: int | None = None, force: bool = False
) -> ImportResult:
    """Convert the Hugging Face folder into a gptdeploy checkpoint folder; returns an `ImportResult`.

    `block_size` caps the context (Llama configs often declare 128k positions, which would size every KV cache; a
    sliding-window model imports only with a context the window covers).
    The checkpoint is written to a temporary folder and renamed into place, so a failure leaves nothing behind.
    """
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.model import GPT

    folder, checkpoint = Path(folder), Path(checkpoint)
    if checkpoint.exists() and not force:
        raise CheckpointError(f"{checkpoint} already exists; pass --force to replace it or choose another -o")
    hf_config = read_hf_config(folder)
    family = hf_family(hf_config, folder)
    config = hf_to_config(hf_config, family, block_size)
    if config.block_size > 8192:
        logger.warning("the model declares a context of %d tokens, and runtimes size their KV cache to it; "
                       "--block-size caps it", config.block_size)  # fmt: skip
    tensors = read_safetensors(folder)
    source_dtype = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    state = gather(tensors, config, family)
    tokenizer = hf_tokenizer(folder, config)
    model = GPT(config)
    _load_weights(model, state, folder)
    info = {"stage": "import-hf", "source": str(folder), "hf_architecture": hf_config["architectures"][0]}
    with staging_folder(checkpoint) as staging:
        save_checkpoint(staging, model.eval(), tokenizer, info)
        try:
            replace_folder(staging, checkpoint)
        except FileExistsError as error:
            raise CheckpointError(f"{checkpoint} was created while importing; pass --force to replace it") from error
    logger.info("imported %s (%s, %d parameters) into %s", folder, family, model.num_parameters(), checkpoint)
    return ImportResult(checkpoint, family, config, model.num_parameters(), source_dtype)


def read_hf_config(folder: Path) -> dict:
    if not folder.is_dir():
        raise CheckpointError(f"Hugging Face folder {folder} does not exist")
    path = _file(folder, "config.json")
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a Hugging Face model folder: config.json is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is corrupt: {error}") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a model config (expected a JSON object)")
    return data


def read_safetensors(folder: Path) -> dict:
    """Every tensor of the folder's safetensors file(s), by name; pickled weights are refused, not opened."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    index = _file(folder, SAFETENSORS_INDEX)
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
            raise CheckpointError(f"{index} is corrupt: {error}") from error
    elif (folder / SAFETENSORS_FILE).is_file():
        files = [SAFETENSORS_FILE]
    else:
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        hint = (f" (found {', '.join(pickled)}: pickled weights are never loaded; re-save the model with "
                "save_pretrained(..., safe_serialization=True))") if pickled else ""  # fmt: skip
        raise CheckpointError(f"{folder} has no {SAFETENSORS_FILE} or {SAFETENSORS_INDEX}{hint}")
    tensors = {}
    for name in files:
        path = _file(folder, name, f"weight file named in {SAFETENSORS_INDEX}")
        if not path.is_file():
            raise CheckpointError(f"{folder} is incomplete: {name} (named in {SAFETENSORS_INDEX}) is missing")
        try:
            tensors.update(load_file(path))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read weights {path}: {error}".splitlines()[0]) from error
    if not tensors:
        raise CheckpointError(f"{folder}: the safetensors files hold no tensors")
    from gptdeploy.checkpoint import refuse_non_finite

    refuse_non_finite(tensors, folder)
    return tensors


def _file(folder: Path, name: object, what: str = "file") -> Path:
    """A file of the Hugging Face folder, which must stay in it; in a Hugging Face cache snapshot
    (models--x/snapshots/REV/) files are symlinks into models--x/blobs/, so they may resolve anywhere in models--x/."""
    within = folder.parent.parent if folder.parent.name == "snapshots" else None
    return inside(folder, name, CheckpointError, what, "fix the folder, or re-save the model with save_pretrained",
                  within=within)  # fmt: skip


def _load_weights(model, state: dict, folder: Path) -> None:
    expected = model.state_dict()
    for name, tensor in state.items():
        if name in expected and expected[name].shape != tensor.shape:
            raise CheckpointError(f"{folder}: tensor for {name} has shape {tuple(tensor.shape)}, the config implies "
                                  f"{tuple(expected[name].shape)}")  # fmt: skip
    model.load_state_dict(state, strict=True)


def hf_tokenizer(folder: Path, config: GPTConfig) -> Tokenizer:
    """The folder's `tokenizer.json`, with bos / eos / pad from its `tokenizer_config.json` (or config.json ids) and
    its own chat template (ours when it has none)."""
    if not _file(folder, TOKENIZER_FILE).is_file():
        raise TokenizerError(f"{folder} has no {TOKENIZER_FILE}; write one with transformers: "
                             f"AutoTokenizer.from_pretrained(FOLDER).save_pretrained(FOLDER)")  # fmt: skip
    from tokenizers import Tokenizer as BackendTokenizer

    try:
        backend = BackendTokenizer.from_file(str(folder / TOKENIZER_FILE))
    except Exception as error:  # the Rust library raises plain Exceptions for malformed files
        raise TokenizerError(f"cannot read tokenizer {folder / TOKENIZER_FILE}: {error}") from error
    settings = read_tokenizer_config(_file(folder, SPECIAL_TOKENS_FILE), _file(folder, CHAT_TEMPLATE_FILE))
    if "eos" not in settings:
        settings |= _roles_from_ids(folder, backend)
    try:
        tokenizer = Tokenizer(backend, **settings)
    except GptDeployError as error:
        raise TokenizerError(f"{folder}: {error}") from error
    if tokenizer.vocab_size > config.vocab_size:
        raise TokenizerError(f"{folder}: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary "
                             f"only {config.vocab_size}")  # fmt: skip
    return tokenizer


def _roles_from_ids(folder: Path, backend) -> dict[str, str]:
    """Special tokens from config.json's bos/eos/pad ids, for folders without a tokenizer_config.json."""
    hf = read_hf_config(folder)
    roles = {}
    for role in ("bos", "eos", "pad"):
        token_id = hf.get(f"{role}_token_id")
        if isinstance(token_id, list):  # several stop tokens (Llama 3): the first one ends text
            token_id = token_id[0] if token_id else None
        text = backend.id_to_token(token_id) if isinstance(token_id, int) else None
        if text is not None:
            roles[role] = text
    if "eos" not in roles:
        raise TokenizerError(f"{folder} names no eos token (tokenizer_config.json eos_token or config.json "
                             f"eos_token_id); add one so generation knows where text ends")  # fmt: skip
    return {"bos": roles.get("bos", roles["eos"]), "eos": roles["eos"], "pad": roles.get("pad", roles["eos"])}
