"""gptdeploy checkpoints -> Hugging Face folders (GPT-2, Llama, Mistral, Qwen2, Qwen3, Phi-3).

The inverse of `hf_import`: config.json, generation_config.json, model.safetensors and the tokenizer files, written so
`transformers` loads the model with `AutoModelForCausalLM.from_pretrained` and other tools built on that layout
(onnxruntime-genai's model builder, llama.cpp's converter) read it. A config maps onto a family only when every
option agrees (`hf_config.family_mismatches`); otherwise the export is refused with the options that stand in the way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from gptdeploy.errors import ExportError
from gptdeploy.fileio import atomic_write_json, replace_folder, staging_folder
from gptdeploy.hf_config import ARCHITECTURES, choose_family, config_to_hf
from gptdeploy.hf_tensors import scatter
from gptdeploy.validation import checked_arguments

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HfExportResult:
    folder: Path
    family: str
    files: tuple[str, ...]


@checked_arguments(ExportError)
def export_hf(
    checkpoint: str | Path, folder: str | Path, family: str | None = None, force: bool = False
) -> HfExportResult:
    """Write the checkpoint as a Hugging Face folder of `family` (default: the family it was imported from, else the
    first it maps onto).

    Written to a temporary folder and renamed into place, so a failure never leaves half a folder (nor loses an
    older one).
    """
    from safetensors.torch import save_file

    from gptdeploy.checkpoint import load_checkpoint

    folder = Path(folder)
    if folder.exists() and not force:
        raise ExportError(f"{folder} already exists; pass --force to replace it or choose another -o")
    loaded = load_checkpoint(checkpoint)
    config, tokenizer = loaded.config, loaded.tokenizer
    family = choose_family(config, family, preferred=ARCHITECTURES.get(loaded.info.get("hf_architecture")))
    hf_config = config_to_hf(config, family)
    special = {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    hf_config.update(special, dtype="float32")
    state = {name: tensor.detach().float().contiguous() for name, tensor in loaded.model.state_dict().items()}
    tensors = scatter(state, config, family)
    with staging_folder(folder) as staging:
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        atomic_write_json(staging / "config.json", hf_config)
        atomic_write_json(staging / "generation_config.json", {**special, "do_sample": False})
        tokenizer.save_for_interchange(staging)
        files = tuple(sorted(p.name for p in staging.iterdir()))
        try:
            replace_folder(staging, folder)
        except FileExistsError as error:
            raise ExportError(f"{folder} was created while exporting; pass --force to replace it") from error
    logger.info("wrote %s as a Hugging Face %s folder to %s", checkpoint, family, folder)
    return HfExportResult(folder, family, files)
