"""gptdeploy checkpoints -> GGUF files, the format llama.cpp and everything built on it (Ollama, LM Studio, phone
apps) runs. Written with the `gguf` package, llama.cpp's own writer (`pip install 'gptdeploy[gguf]'`).

A model maps onto one of llama.cpp's architectures or is refused with the options in the way:
  gpt2    learned positions, LayerNorm, GELU, biases, one key/value head per query head
  llama   rotary positions, RMSNorm, SwiGLU, biases on every layer or none (Llama, Mistral, Phi-3, SmolLM, TinyLlama)
  qwen2   the same with biases on q/k/v alone
  qwen3   the same with RMSNorm over each head's query and key
llama.cpp's `llama` architecture rotates adjacent pairs of a head while our model (and Hugging Face's) rotates its two
halves, so the q and k rows of each head are reordered for it, as llama.cpp's own converter does; qwen2 and qwen3
rotate halves like us. Types: f32, f16 and q8_0 for the weight matrices; norms and biases stay f32, and a matrix
whose rows are not a whole number of 32-value q8_0 blocks stays f16.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptdeploy.config import GPTConfig
from gptdeploy.errors import ConfigError, ExportError
from gptdeploy.fileio import atomic_path
from gptdeploy.gguf_vocab import GgufVocab, gguf_vocab
from gptdeploy.hf_config import choose_family

logger = logging.getLogger(__name__)

ARCHITECTURES = ("gpt2", "llama", "qwen2", "qwen3")  # llama.cpp names, each the Hugging Face family it reads
TYPES = ("f32", "f16", "q8_0")


@dataclass(frozen=True)
class GgufExportResult:
    path: Path
    architecture: str
    type: str
    pre_tokenizer: str
    tensors: int
    size_bytes: int


def export_gguf(
    checkpoint: str | Path, path: str | Path, gguf_type: str = "f32", force: bool = False
) -> GgufExportResult:
    """Write the checkpoint as one GGUF file (weights, hyperparameters, tokenizer), atomically."""
    from gptdeploy.checkpoint import load_checkpoint

    gguf = _gguf()
    if gguf_type not in TYPES:
        raise ConfigError(f"unknown GGUF type {gguf_type!r}; choose one of {', '.join(TYPES)}")
    path = Path(path)
    if path.exists() and not force:
        raise ExportError(f"{path} already exists; pass --force to replace it or choose another -o")
    loaded = load_checkpoint(checkpoint)
    config = loaded.config
    architecture = choose_family(config, families=ARCHITECTURES, kind="llama.cpp architecture")
    vocab = gguf_vocab(loaded.tokenizer, config.vocab_size)
    state = {name: tensor.detach().float().cpu() for name, tensor in loaded.model.state_dict().items()}
    tensors = gguf_tensors(state, config, architecture)
    with atomic_path(path) as staging:
        writer = gguf.GGUFWriter(str(staging), architecture)
        writer.add_name(loaded.path.name)  # what Ollama and LM Studio list the model as
        _write_hyperparameters(writer, config, architecture, gguf_type)
        _write_vocab(writer, vocab)
        for name, array in tensors.items():
            _add_tensor(writer, name, array, gguf_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    logger.info(
        "wrote %s (%s, %s, %d tensors, pre-tokenizer %s)", path, architecture, gguf_type, len(tensors), vocab.pre
    )
    return GgufExportResult(path, architecture, gguf_type, vocab.pre, len(tensors), path.stat().st_size)


def _gguf():
    try:
        import gguf
    except ImportError as error:
        raise ExportError("GGUF export needs the gguf package: pip install 'gptdeploy[gguf]'") from error
    return gguf


def gguf_tensors(state: dict, config: GPTConfig, architecture: str) -> dict:
    """GGUF tensor name -> float32 numpy array, in llama.cpp's names and layouts."""
    gguf = _gguf()
    T = gguf.MODEL_TENSOR

    def name(tensor, kind: str = "weight", layer: int | None = None) -> str:
        return f"{gguf.TENSOR_NAMES[tensor].format(bid=layer)}.{kind}"

    out = {name(T.TOKEN_EMBD): state["wte.weight"]}
    if architecture == "gpt2":
        out[name(T.POS_EMBD)] = state["wpe.weight"]
    kinds = ("weight", "bias") if config.bias else ("weight",)
    norm_kinds = kinds if config.norm == "layernorm" else ("weight",)  # RMSNorm has no bias
    q, kv = config.n_head * config.head_dim, config.kv_heads * config.head_dim
    for i in range(config.n_layer):
        ours = f"h.{i}"
        for tensor, norm in ((T.ATTN_NORM, "ln_1"), (T.FFN_NORM, "ln_2")):
            for kind in norm_kinds:
                out[name(tensor, kind, i)] = state[f"{ours}.{norm}.{kind}"]
        for kind in ("weight", "bias"):
            if f"{ours}.attn.c_attn.{kind}" in state:
                qkv = state[f"{ours}.attn.c_attn.{kind}"]
                if architecture == "gpt2":
                    out[name(T.ATTN_QKV, kind, i)] = qkv
                else:
                    parts = dict(zip((T.ATTN_Q, T.ATTN_K, T.ATTN_V), qkv.split([q, kv, kv]), strict=True))
                    if architecture == "llama":  # half-split rotation -> llama.cpp's adjacent pairs
                        parts[T.ATTN_Q] = _interleave_rotary_rows(parts[T.ATTN_Q], config.n_head)
                        parts[T.ATTN_K] = _interleave_rotary_rows(parts[T.ATTN_K], config.kv_heads)
                    out.update({name(tensor, kind, i): part for tensor, part in parts.items()})
            if kind in kinds:
                out[name(T.ATTN_OUT, kind, i)] = state[f"{ours}.attn.c_proj.{kind}"]
                out[name(T.FFN_DOWN, kind, i)] = state[f"{ours}.mlp.c_proj.{kind}"]
                fc = state[f"{ours}.mlp.c_fc.{kind}"]
                if architecture == "gpt2":
                    out[name(T.FFN_UP, kind, i)] = fc
                else:
                    gate, up = fc.chunk(2)
                    out[name(T.FFN_GATE, kind, i)], out[name(T.FFN_UP, kind, i)] = gate, up
        if config.qk_norm:
            out[name(T.ATTN_Q_NORM, "weight", i)] = state[f"{ours}.attn.q_norm.weight"]
            out[name(T.ATTN_K_NORM, "weight", i)] = state[f"{ours}.attn.k_norm.weight"]
    for kind in norm_kinds:
        out[name(T.OUTPUT_NORM, kind)] = state[f"ln_f.{kind}"]
    if not config.tie_embeddings:  # llama.cpp falls back to token_embd when output is absent
        out[name(T.OUTPUT)] = state["lm_head.weight"]
    return {key: tensor.contiguous().numpy() for key, tensor in out.items()}


def _interleave_rotary_rows(rows, heads: int):
    """Each head's rows [x_0 .. x_{d/2-1}, y_0 .. y_{d/2-1}] -> [x_0, y_0, x_1, y_1, ...]: the pairs a half-split
    rotation turns together become adjacent, which is how llama.cpp's `llama` architecture rotates."""
    head_dim = rows.shape[0] // heads
    shape = rows.shape[1:]
    return rows.reshape(heads, 2, head_dim // 2, *shape).transpose(1, 2).reshape(rows.shape)


def _write_hyperparameters(writer, config: GPTConfig, architecture: str, gguf_type: str) -> None:
    gguf = _gguf()
    writer.add_context_length(config.block_size)
    writer.add_embedding_length(config.n_embd)
    writer.add_block_count(config.n_layer)
    writer.add_feed_forward_length(config.hidden_size)
    writer.add_head_count(config.n_head)
    writer.add_head_count_kv(config.kv_heads)
    writer.add_vocab_size(config.vocab_size)
    if architecture == "gpt2":
        writer.add_layer_norm_eps(config.norm_eps)
    else:
        writer.add_layer_norm_rms_eps(config.norm_eps)
        writer.add_rope_freq_base(config.rope_theta)
        writer.add_rope_dimension_count(config.head_dim)
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    file_types = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                  "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}  # fmt: skip
    writer.add_file_type(file_types[gguf_type])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _write_vocab(writer, vocab: GgufVocab) -> None:
    writer.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(True)  # gptdeploy starts every prompt with bos
    writer.add_add_eos_token(False)


def _add_tensor(writer, name: str, array, gguf_type: str) -> None:
    """Matrices in the requested type; 1-D tensors (norms, biases) in f32, as llama.cpp expects them."""
    gguf = _gguf()
    if array.ndim == 1 or gguf_type == "f32":
        writer.add_tensor(name, array.astype(np.float32))
        return
    if gguf_type == "q8_0" and array.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        quantized = gguf.quants.quantize(array.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        return
    writer.add_tensor(name, array.astype(np.float16))
