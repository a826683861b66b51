"""config.json -> GPTConfig: every family's fields, and the rotary settings resolved exactly as transformers does."""

import json

import pytest

from gptdeploy.errors import ConfigError
from tests.hf_models import edited_copy, make_hf_folder, torch, transformers

LINEAR = {"rope_type": "linear", "factor": 2.0}
# config.json rotary keys -> what gptdeploy must do: a rope_theta (transformers' own reading), or a refusal
ROPE_CASES = {
    "the issue: rope_scaling beside rope_parameters": (
        dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4}, rope_scaling=LINEAR),
        "unsupported rope scaling 'linear'"),
    "rope_scaling's theta from the top level": (
        dict(rope_parameters={"rope_type": "default", "rope_theta": 999.0}, rope_scaling={"rope_type": "default"},
             rope_theta=777.0), 777.0),
    "transformers 5 keys": (dict(rope_parameters={"rope_type": "default", "rope_theta": 5e5}), 5e5),
    "transformers 4 keys": (dict(rope_parameters=None, rope_theta=1234, rope_scaling=None), 1234.0),
    "4.x 'type' key": (dict(rope_parameters=None, rope_scaling={"type": "linear", "factor": 2.0}),
                       "unsupported rope scaling 'linear'"),
    "empty rope_scaling": (dict(rope_parameters={"rope_type": "default", "rope_theta": 5e5}, rope_scaling={}), 5e5),
    "no rotary keys at all": (dict(rope_parameters=None), 10000.0),
    "yarn": (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4,
                                   "original_max_position_embeddings": 32}), "unsupported rope scaling 'yarn'"),
    "partial rotary at the top level": (dict(partial_rotary_factor=0.5), "partial_rotary_factor=0.5"),
    "two thetas that disagree": (dict(rope_parameters={"rope_type": "default", "rope_theta": 999.0}, rope_theta=777.0),
                                 "ambiguous: transformers 5.x reads rope_theta 999.0 and 4.x reads 777.0"),
}  # fmt: skip


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "llama"
    make_hf_folder(folder, "llama", num_attention_heads=4, num_key_value_heads=2, intermediate_size=40)
    return folder


@pytest.mark.parametrize("case", ROPE_CASES)
def test_rotary_settings_resolve_as_transformers_resolves_them(llama_folder, tmp_path, case):
    from gptdeploy.hf_import import import_hf

    changes, expected = ROPE_CASES[case]
    folder = edited_copy(llama_folder, tmp_path / "hf", **changes)
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            import_hf(folder, tmp_path / "checkpoint")
        return
    theirs = transformers.AutoConfig.from_pretrained(folder).rope_parameters  # transformers' own reading
    assert (theirs["rope_type"], theirs["rope_theta"]) == ("default", expected)
    assert import_hf(folder, tmp_path / "checkpoint").config.rope_theta == expected


def test_transformers_reads_the_issue_config_as_linear_scaling(llama_folder, tmp_path):
    """The refusal above is transformers' own reading, not a guess: it resolves the issue's config to linear."""
    changes = ROPE_CASES["the issue: rope_scaling beside rope_parameters"][0]
    folder = edited_copy(llama_folder, tmp_path / "hf", **changes)
    assert transformers.AutoConfig.from_pretrained(folder).rope_parameters["rope_type"] == "linear"


def test_a_theta_from_rope_scaling_gives_transformers_logits(llama_folder, tmp_path):
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.hf_import import import_hf

    folder = edited_copy(llama_folder, tmp_path / "hf", **ROPE_CASES["rope_scaling's theta from the top level"][0])
    reference = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    loaded = load_checkpoint(import_hf(folder, tmp_path / "checkpoint").checkpoint)
    ids = torch.tensor([list(range(3, 60))])
    with torch.no_grad():
        expected, logits = reference(ids).logits, loaded.model(ids)[0]
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()


# The config.json key sets of checkpoints people deploy on small devices, as published (transformers 4.x era: top-level
# rope_theta, rope_scaling null, keys transformers ignores such as rope_interleaved), shrunk to a few layers and a
# narrow width with their head ratios kept. window: the sliding window that needs --block-size.
SHRINK = dict(vocab_size=331, num_hidden_layers=2, bos_token_id=1, eos_token_id=2, initializer_range=0.5)
PUBLISHED = {
    "SmolLM2-135M": dict(architectures=["LlamaForCausalLM"], model_type="llama", attention_bias=False,
                         attention_dropout=0.0, hidden_act="silu", hidden_size=72, intermediate_size=192,
                         is_llama_config=True, max_position_embeddings=8192, mlp_bias=False, num_attention_heads=9,
                         num_key_value_heads=3, pretraining_tp=1, rms_norm_eps=1e-05, rope_interleaved=False,
                         rope_scaling=None, rope_theta=100000, tie_word_embeddings=True, torch_dtype="bfloat16",
                         transformers_version="4.42.3", use_cache=True),
    "TinyLlama-1.1B-Chat-v1.0": dict(architectures=["LlamaForCausalLM"], model_type="llama", attention_bias=False,
                                     hidden_act="silu", hidden_size=64, intermediate_size=176,
                                     max_position_embeddings=2048, num_attention_heads=8, num_key_value_heads=1,
                                     pretraining_tp=1, rms_norm_eps=1e-05, rope_scaling=None, rope_theta=10000.0,
                                     tie_word_embeddings=False, torch_dtype="bfloat16", transformers_version="4.35.0",
                                     use_cache=True),
    "Qwen2.5-0.5B-Instruct": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", attention_dropout=0.0,
                                  hidden_act="silu", hidden_size=56, intermediate_size=304,
                                  max_position_embeddings=32768, max_window_layers=21, num_attention_heads=14,
                                  num_key_value_heads=2, rms_norm_eps=1e-06, rope_theta=1000000.0,
                                  sliding_window=32768, tie_word_embeddings=True, torch_dtype="bfloat16",
                                  transformers_version="4.43.1", use_cache=True, use_sliding_window=False),
    "Qwen3-0.6B": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", attention_bias=False,
                       attention_dropout=0.0, head_dim=16, hidden_act="silu", hidden_size=64, intermediate_size=192,
                       max_position_embeddings=40960, max_window_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, rms_norm_eps=1e-06, rope_scaling=None, rope_theta=1000000,
                       sliding_window=None, tie_word_embeddings=True, torch_dtype="bfloat16",
                       transformers_version="4.51.0", use_cache=True, use_sliding_window=False),
    "Mistral-7B-v0.1": dict(architectures=["MistralForCausalLM"], model_type="mistral", hidden_act="silu",
                            hidden_size=64, intermediate_size=224, max_position_embeddings=32768,
                            num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-05, rope_theta=10000.0,
                            sliding_window=4096, tie_word_embeddings=False, torch_dtype="bfloat16",
                            transformers_version="4.34.0.dev0", use_cache=True),
    "Phi-3-mini-4k-instruct": dict(architectures=["Phi3ForCausalLM"], model_type="phi3", attention_bias=False,
                                   attention_dropout=0.0, embd_pdrop=0.0, hidden_act="silu", hidden_size=64,
                                   intermediate_size=160, max_position_embeddings=4096, num_attention_heads=8,
                                   num_key_value_heads=8, original_max_position_embeddings=4096, pad_token_id=2,
                                   resid_pdrop=0.0, rms_norm_eps=1e-05, rope_scaling=None, rope_theta=10000.0,
                                   sliding_window=2047, tie_word_embeddings=False, torch_dtype="bfloat16",
                                   transformers_version="4.40.2", use_cache=True),
}  # fmt: skip
WINDOWS = {"Mistral-7B-v0.1": 4096, "Phi-3-mini-4k-instruct": 2047}


def published_folder(folder, name: str):
    """A random model of the published config, saved, then config.json put back exactly as published."""
    from tests.hf_models import save_tokenizer

    published = {**PUBLISHED[name], **SHRINK}
    settings = {key: value for key, value in published.items() if key != "model_type"}
    config = transformers.AutoConfig.for_model(published["model_type"], **settings)
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(published))
    save_tokenizer(folder, "<s>", "</s>")
    return transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()  # as it reads the file


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_configs_import_and_compute_what_transformers_computes(tmp_path, name):
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.hf_import import import_hf
    from gptdeploy.runtimes.torch_runtime import TorchRuntime
    from tests.hf_models import PROMPT, hf_greedy

    reference = published_folder(tmp_path / "hf", name)
    window = WINDOWS.get(name)
    if window:  # the window is narrower than the declared context: refused until --block-size fits it
        with pytest.raises(ConfigError, match=f"sliding window of {window} tokens.*pass --block-size {window}"):
            import_hf(tmp_path / "hf", tmp_path / "refused")
        assert not (tmp_path / "refused").exists()
    result = import_hf(tmp_path / "hf", tmp_path / "checkpoint", block_size=window or 512)
    loaded = load_checkpoint(result.checkpoint)
    assert result.parameters == sum(p.numel() for p in reference.parameters())
    ids = loaded.tokenizer.encode(PROMPT * 3, bos=True)
    with torch.no_grad():
        expected, logits = reference(torch.tensor([ids])).logits[0], loaded.model(torch.tensor([ids]))[0][0]
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()
    runtime = TorchRuntime(loaded.model, loaded.tokenizer)
    ours = generate(runtime, PROMPT, GenerationConfig(max_new_tokens=16, ignore_eos=True)).tokens
    assert ours == hf_greedy(reference, loaded.tokenizer.encode(PROMPT, bos=True), 16)


REFUSED = {
    "qwen3 attention_bias": ("Qwen3-0.6B", dict(attention_bias=True),
                             "bias layout attention_bias=True, mlp_bias=False"),
    "qwen2 window on its upper layers": ("Qwen2.5-0.5B-Instruct", dict(use_sliding_window=True, sliding_window=64,
                                                                              max_window_layers=1),
                                         "sliding window of 64 tokens .* pass --block-size 64"),
    "qwen2 chunked layers": ("Qwen2.5-0.5B-Instruct", dict(layer_types=["full_attention", "chunked_attention"]),
                             r"layer_types \['chunked_attention'\]"),
    "qwen rope per layer type": ("Qwen3-0.6B", dict(
        use_sliding_window=True, sliding_window=64, max_window_layers=1, rope_theta=None,
        rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1e4},
                         "sliding_attention": {"rope_type": "default", "rope_theta": 1e6}}),
        "each layer type its own rotary settings"),
    "phi3 longrope ('su')": ("Phi-3-mini-4k-instruct", dict(rope_scaling={"type": "su", "short_factor": [1.0] * 4,
                                                                         "long_factor": [1.0] * 4}),
                             "unsupported rope scaling 'longrope'"),
    "phi-4-mini partial rotary": ("Phi-3-mini-4k-instruct", dict(partial_rotary_factor=0.75),
                                  "partial_rotary_factor=0.75"),
    "mistral default window": ("Mistral-7B-v0.1", dict(sliding_window=None, max_position_embeddings=8192),
                               "sliding window of 4096 tokens"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED)
def test_what_the_model_cannot_compute_is_refused_by_name(case):
    from gptdeploy.hf_config import hf_family, hf_to_config

    name, changes, message = REFUSED[case]
    hf = {**PUBLISHED[name], **SHRINK, **changes}
    if name == "Mistral-7B-v0.1" and changes.get("sliding_window", 0) is None:
        del hf["sliding_window"]  # a file without the key gets MistralConfig's default window, 4096
    hf = {key: value for key, value in hf.items() if value is not None or key == "sliding_window"}
    with pytest.raises(ConfigError, match=message):
        hf_to_config(hf, hf_family(hf, "config.json"), block_size=None if "window" in case else 512)


def test_rope_settings_per_layer_type_that_agree_are_one_setting():
    from gptdeploy.hf_config import hf_to_config

    same = {"rope_type": "default", "rope_theta": 5e5}
    hf = {**PUBLISHED["Qwen3-0.6B"], **SHRINK, "rope_theta": None, "use_sliding_window": True, "sliding_window": 512,
          "max_window_layers": 1, "rope_parameters": {"full_attention": same, "sliding_attention": same}}  # fmt: skip
    del hf["rope_theta"]
    assert hf_to_config(hf, "qwen3", block_size=512).rope_theta == 5e5
