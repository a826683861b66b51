"""Hugging Face folders built here with transformers (random init, nothing downloaded), shared by the interop tests."""

from __future__ import annotations

import json
import shutil

import pytest

transformers = pytest.importorskip("transformers", reason="transformers is optional (the dev extra installs it)")
torch = pytest.importorskip("torch")

TEXTS = ["Mia lives in Riverton. She has a brown dog named Pip.", "Tom had 12 apples and gave 5 to Mia, so 7 left."]
PROMPT = "Mia lives in Riverton with Tom"
# Large initial weights make random models' next-token choices decisive, so a greedy comparison over 64 tokens
# tests the arithmetic rather than how near-ties fall.
INIT = 0.5
CLASSES = {  # family -> (config class, model class)
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),
}
# One random model per family, each with a shape that is odd somewhere (vocabulary 331 everywhere).
CASES = {
    "gpt2-3-heads-odd-vocab": ("gpt2", dict(n_embd=48, n_head=3, n_inner=100)),
    "gpt2-untied": ("gpt2", dict(n_embd=32, n_head=2, tie_word_embeddings=False)),
    "llama-gqa-8-to-2": ("llama", dict(num_attention_heads=8, num_key_value_heads=2, intermediate_size=88)),
    "llama-tied-biased-mha": ("llama", dict(num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
                                            attention_bias=True, mlp_bias=True, rope_theta=500000.0)),
    "llama-wide-heads": ("llama", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=24)),
    "mistral-mqa-3-heads": ("mistral", dict(hidden_size=48, num_attention_heads=3, num_key_value_heads=1,
                                            intermediate_size=72, sliding_window=96)),
    "qwen2-tied-6-heads": ("qwen2", dict(hidden_size=72, num_attention_heads=6, num_key_value_heads=2,
                                         intermediate_size=100, tie_word_embeddings=True, rope_theta=1e6)),
    "qwen3-wide-heads": ("qwen3", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=24,
                                       intermediate_size=88)),
    "qwen2-gqa-4-to-2": ("qwen2", dict(num_attention_heads=4, num_key_value_heads=2, intermediate_size=88)),
    "qwen3-heads-32": ("qwen3", dict(num_attention_heads=4, num_key_value_heads=2, head_dim=32, intermediate_size=88)),
    "phi3-5-heads": ("phi3", dict(hidden_size=80, num_attention_heads=5, num_key_value_heads=5,
                                  intermediate_size=120)),
}  # fmt: skip


def save_tokenizer(folder, bos: str, eos: str) -> None:
    """A byte-level BPE tokenizer saved by transformers, as a downloaded folder would carry it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=list(dict.fromkeys([bos, eos])), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    backend.train_from_iterator(TEXTS * 10, trainer)
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos).save_pretrained(folder)


def hf_model(family: str, **overrides):
    """A random model of `family` with a vocabulary of 331 (not a multiple of 8), 2 layers, 96 positions."""
    config_class, model_class = (getattr(transformers, name) for name in CLASSES[family])
    torch.manual_seed(0)
    if family == "gpt2":
        settings = dict(vocab_size=331, n_positions=96, n_layer=2, bos_token_id=0, eos_token_id=0)
    else:
        rope = {"rope_type": "default", "rope_theta": overrides.pop("rope_theta", 10000.0)}
        settings = dict(vocab_size=331, hidden_size=64, num_hidden_layers=2, max_position_embeddings=96,
                        bos_token_id=1, eos_token_id=2, pad_token_id=None, rope_parameters=rope)  # fmt: skip
    return model_class(config_class(**{**settings, "initializer_range": INIT, **overrides})).eval()


def make_hf_folder(folder, family: str, **overrides):
    """`hf_model(family, **overrides)` saved with its tokenizer, as a downloaded folder holds it; returns the model."""
    model = hf_model(family, **overrides)
    save_tokenizer(folder, *(("<|endoftext|>", "<|endoftext|>") if family == "gpt2" else ("<s>", "</s>")))
    model.save_pretrained(folder)
    return model


def hf_greedy(model, ids: list[int], steps: int) -> list[int]:
    """transformers' own cached decoding, one argmax at a time (generate() would stop at eos)."""
    with torch.no_grad():
        output = model(torch.tensor([ids]), use_cache=True)
        tokens = []
        for _ in range(steps):
            tokens.append(int(output.logits[0, -1].argmax()))
            output = model(torch.tensor([[tokens[-1]]]), cache=output.past_key_values, use_cache=True)
    return tokens


def edited_copy(source, target, **config_changes):
    """A copy of an HF folder whose config.json differs (None deletes a key)."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    for key, value in config_changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (target / "config.json").write_text(json.dumps(config))
    return target
