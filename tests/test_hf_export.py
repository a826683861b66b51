"""Checkpoints made here export to Hugging Face folders that transformers loads and that import back unchanged."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gptdeploy.errors import ConfigError, ExportError

transformers = pytest.importorskip("transformers", reason="transformers is optional (the dev extra installs it)")
torch = pytest.importorskip("torch")

PROMPT = "Mia lives in Riverton"
LLAMA_STYLE = dict(positions="rope", norm="rmsnorm", mlp="swiglu", bias=False)
VARIANTS = {  # name (its family first, or the family asked for) -> GPTConfig overrides
    "gpt2": {},
    "gpt2-untied-3-heads": dict(n_head=3, n_embd=48, tie_embeddings=False, mlp_hidden=100, dropout=0.1),
    "llama-gqa": dict(**LLAMA_STYLE, n_kv_head=2, tie_embeddings=False),
    "llama-tied-biased": dict(**{**LLAMA_STYLE, "bias": True}, rope_theta=5e5, norm_eps=1e-6),
    "llama-wide-heads": dict(**LLAMA_STYLE, n_kv_head=2, head_size=24),
    "qwen2-tied": dict(**LLAMA_STYLE, n_kv_head=2, qkv_bias=True, rope_theta=1e6),
    "qwen3-wide-heads": dict(**LLAMA_STYLE, n_kv_head=1, qk_norm=True, head_size=24, tie_embeddings=False),
    "mistral": dict(**LLAMA_STYLE, n_kv_head=2, tie_embeddings=False),
    "phi3": dict(**LLAMA_STYLE, tie_embeddings=False),
}
REQUESTED = ("mistral", "phi3")  # llama-style configs fit these too; only asked for, never chosen by default


@pytest.fixture
def checkpoint_of(tmp_path, tokenizer):
    from gptdeploy.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    def make(**overrides):
        return save_checkpoint(tmp_path / "checkpoint", tiny_model(**overrides), tokenizer)

    return make


@pytest.mark.parametrize("variant", VARIANTS)
def test_transformers_loads_the_export_and_it_imports_back_unchanged(tmp_path, checkpoint_of, variant):
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.hf_export import export_hf
    from gptdeploy.hf_import import import_hf

    checkpoint = checkpoint_of(**VARIANTS[variant])
    original = load_checkpoint(checkpoint)
    family = variant.split("-")[0]
    result = export_hf(checkpoint, tmp_path / "hf", family=family if family in REQUESTED else None)
    assert result.family == family

    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = hf_tokenizer(PROMPT, return_tensors="pt").input_ids
    assert ids[0].tolist() == original.tokenizer.encode(PROMPT, bos=True)  # bos first, as gptdeploy feeds it
    assert hf_tokenizer.eos_token_id == original.tokenizer.eos_id
    with torch.no_grad():
        expected, _ = original.model(ids)
        logits = model(ids).logits
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()

    back = load_checkpoint(import_hf(tmp_path / "hf", tmp_path / "back").checkpoint)
    assert back.config == original.config
    assert back.tokenizer.encode(PROMPT) == original.tokenizer.encode(PROMPT)
    for name, tensor in original.model.state_dict().items():
        assert torch.equal(back.model.state_dict()[name], tensor), name


def test_configs_that_map_onto_no_family_are_refused_with_the_reasons(tmp_path, checkpoint_of):
    from gptdeploy.hf_export import export_hf
    from tests.helpers import MODEL_VARIANTS

    checkpoint = checkpoint_of(**MODEL_VARIANTS["mqa-untied-gelu-rope"])
    with pytest.raises(ConfigError, match=r"gpt2: positions='rope' .*n_kv_head=1.*llama: norm='layernorm'"):
        export_hf(checkpoint, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_the_requested_family_must_fit(tmp_path, checkpoint_of):
    from gptdeploy.hf_export import export_hf

    checkpoint = checkpoint_of(**VARIANTS["llama-gqa"])
    with pytest.raises(ConfigError, match=r"gpt2: positions='rope' \(it needs learned positions\), norm='rmsnorm'"):
        export_hf(checkpoint, tmp_path / "hf", family="gpt2")
    with pytest.raises(ConfigError, match="unknown Hugging Face architecture 'gemma'"):
        export_hf(checkpoint, tmp_path / "hf", family="gemma")


@pytest.mark.parametrize("case", ["mistral-mqa-3-heads", "phi3-5-heads"])
def test_an_imported_model_goes_back_as_the_family_it_came_from(tmp_path, case):
    from gptdeploy.hf_export import export_hf
    from gptdeploy.hf_import import import_hf
    from tests.hf_models import CASES, make_hf_folder

    family, overrides = CASES[case]
    reference = make_hf_folder(tmp_path / "in", family, **overrides)
    checkpoint = import_hf(tmp_path / "in", tmp_path / "checkpoint").checkpoint
    assert export_hf(checkpoint, tmp_path / "out").family == family  # llama would fit too: the origin wins
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert type(model) is type(reference)
    ids = torch.tensor([list(range(1, 40))])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)  # the very weights, in the very layout
    assert export_hf(checkpoint, tmp_path / "as-llama", family="llama").family == "llama"


def test_family_options_stand_in_the_way_by_name(tmp_path, checkpoint_of):
    from gptdeploy.hf_export import export_hf

    checkpoint = checkpoint_of(**VARIANTS["qwen2-tied"])
    with pytest.raises(ConfigError, match=r"llama: qkv_bias=True \(it needs no q/k/v-only biases\)"):
        export_hf(checkpoint, tmp_path / "hf", family="llama")
    with pytest.raises(ConfigError, match=r"qwen3: .*qk_norm=False \(it needs q/k RMSNorm\)"):
        export_hf(checkpoint, tmp_path / "hf", family="qwen3")


def test_an_existing_folder_is_only_replaced_with_force(tmp_path, checkpoint_of):
    from gptdeploy.hf_export import export_hf

    checkpoint = checkpoint_of()
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_hf(checkpoint, tmp_path / "hf")
    assert (tmp_path / "hf" / "keep.txt").read_text() == "mine"
    export_hf(checkpoint, tmp_path / "hf", force=True)
    assert not (tmp_path / "hf" / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "hf"]  # no staging folder left behind


def test_cli_export_hf(tmp_path, checkpoint_of):
    from click.testing import CliRunner

    from gptdeploy.cli import main

    checkpoint = checkpoint_of(**VARIANTS["llama-gqa"])
    runner = CliRunner()
    out = runner.invoke(main, ["export-hf", str(checkpoint), "-o", str(tmp_path / "hf"), "--family", "llama", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["files"] == ["config.json", "generation_config.json", "model.safetensors",
                                               "tokenizer.json", "tokenizer_config.json"]  # fmt: skip
    out = runner.invoke(main, ["export-hf", str(checkpoint), "-o", str(tmp_path / "gpt2"), "--family", "gpt2"])
    assert out.exit_code == 1 and out.output.startswith("Error: this model maps onto no Hugging Face architecture")


@pytest.mark.slow
def test_onnxruntime_genai_builds_the_llama_export_and_decodes_like_us(tmp_path, checkpoint_of):
    """The export feeds other tools: onnxruntime-genai's model builder turns it into its own graph."""
    og = pytest.importorskip("onnxruntime_genai", reason="onnxruntime-genai is optional (the dev extra installs it)")
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.hf_export import export_hf
    from gptdeploy.runtimes.base import load_runtime

    checkpoint = checkpoint_of(**VARIANTS["llama-gqa"])
    export_hf(checkpoint, tmp_path / "hf")
    build = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(tmp_path / "hf"), "-o",
             str(tmp_path / "genai"), "-p", "fp32", "-e", "cpu", "-c", str(tmp_path / "cache")]  # fmt: skip
    done = subprocess.run(build, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    model = og.Model(str(tmp_path / "genai"))
    with load_runtime(checkpoint) as runtime:
        ours = generate(runtime, PROMPT, GenerationConfig(max_new_tokens=32, ignore_eos=True))
    ids = runtime.tokenizer.encode(PROMPT, bos=True)
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 32, do_sample=False)
    generator = og.Generator(model, params)
    generator.append_tokens(np.array(ids, dtype=np.int32))
    while not generator.is_done():
        generator.generate_next_token()
    theirs = [int(t) for t in generator.get_sequence(0)[len(ids) :]]
    eos = runtime.tokenizer.eos_id
    assert theirs == ours.tokens[: len(theirs)] and (len(theirs) == 32 or theirs[-1] == eos)


def test_an_encoder_maps_onto_no_decoder_family(encoder_dir, tmp_path):
    from gptdeploy.errors import ConfigError
    from gptdeploy.hf_export import export_hf

    with pytest.raises(ConfigError, match="causal=False"):
        export_hf(encoder_dir, tmp_path / "hf")
