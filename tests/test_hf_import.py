"""Hugging Face folders made here with transformers (random init, nothing downloaded) import into checkpoints that
compute what transformers computes, for every family; what the reference model cannot express is refused by name."""

import json
import shutil

import numpy as np
import pytest

from gptdeploy.errors import CheckpointError, ConfigError, TokenizerError
from tests.hf_models import CASES, PROMPT, TEXTS, edited_copy, hf_greedy, make_hf_folder, torch, transformers


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "llama"
    make_hf_folder(folder, "llama", num_attention_heads=8, num_key_value_heads=2, intermediate_size=88)
    return folder


@pytest.mark.parametrize("case", CASES)
def test_imported_model_matches_transformers(tmp_path, case):
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.hf_import import import_hf
    from gptdeploy.runtimes.torch_runtime import TorchRuntime

    family, overrides = CASES[case]
    reference = make_hf_folder(tmp_path / "hf", family, **overrides)
    result = import_hf(tmp_path / "hf", tmp_path / "checkpoint")
    loaded = load_checkpoint(result.checkpoint)
    assert result.family == family and loaded.config.vocab_size == 331
    assert result.parameters == sum(p.numel() for p in reference.parameters())

    ids = loaded.tokenizer.encode(PROMPT, bos=True)
    with torch.no_grad():
        expected = reference(torch.tensor([ids])).logits[0]
        logits = loaded.model(torch.tensor([ids]))[0][0]
    assert (logits - expected).abs().max() <= 1e-4 * expected.abs().max()

    greedy = GenerationConfig(max_new_tokens=64, ignore_eos=True)
    ours = generate(TorchRuntime(loaded.model, loaded.tokenizer), PROMPT, greedy)
    theirs = hf_greedy(reference, ids, 64)
    assert ours.tokens == theirs and len(set(theirs)) > 4  # not a degenerate single-token loop


def test_the_config_fields_map_onto_gptconfig(tmp_path):
    from gptdeploy.hf_import import import_hf

    make_hf_folder(tmp_path / "hf", "llama", **CASES["llama-tied-biased-mha"][1], rms_norm_eps=1e-5)
    config = import_hf(tmp_path / "hf", tmp_path / "checkpoint", block_size=64).config
    assert (config.positions, config.norm, config.mlp, config.bias, config.tie_embeddings) == (
        "rope", "rmsnorm", "swiglu", True, True)  # fmt: skip
    assert (config.rope_theta, config.norm_eps, config.block_size, config.n_kv_head) == (500000.0, 1e-5, 64, None)


def test_the_tokenizer_and_its_special_tokens_come_along(llama_folder, tmp_path):
    from gptdeploy.hf_import import import_hf
    from gptdeploy.tokenizer import Tokenizer

    import_hf(llama_folder, tmp_path / "checkpoint")
    ours = Tokenizer.load(tmp_path / "checkpoint")
    theirs = transformers.AutoTokenizer.from_pretrained(llama_folder)
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (theirs.bos_token_id, theirs.eos_token_id, theirs.eos_token_id)
    for text in [*TEXTS, "Grüße 12345  two  spaces\n"]:
        assert ours.encode(text) == theirs(text, add_special_tokens=False).input_ids
        assert ours.decode(ours.encode(text)) == text


def test_special_tokens_come_from_config_ids_without_a_tokenizer_config(llama_folder, tmp_path):
    from gptdeploy.hf_import import import_hf
    from gptdeploy.tokenizer import Tokenizer

    folder = edited_copy(llama_folder, tmp_path / "hf")
    (folder / "tokenizer_config.json").unlink()
    import_hf(folder, tmp_path / "checkpoint")
    tokenizer = Tokenizer.load(tmp_path / "checkpoint")
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 2, 2)


LLAMA_STYLE = "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"


@pytest.mark.parametrize("where", ["tokenizer_config.json", "chat_template.jinja"])
def test_an_imported_model_keeps_its_own_chat_template(llama_folder, tmp_path, where):
    from gptdeploy.chat_template import ChatTemplate
    from gptdeploy.hf_import import import_hf
    from gptdeploy.tokenizer import Tokenizer

    folder = edited_copy(llama_folder, tmp_path / "hf")
    if where == "chat_template.jinja":
        (folder / where).write_text(LLAMA_STYLE)
    else:
        settings = json.loads((folder / where).read_text())
        (folder / where).write_text(json.dumps({**settings, "chat_template": LLAMA_STYLE}))
    import_hf(folder, tmp_path / "checkpoint")
    tokenizer = Tokenizer.load(tmp_path / "checkpoint")
    assert tokenizer.chat_template == LLAMA_STYLE
    assert ChatTemplate(tokenizer).render([{"role": "user", "content": "hi"}]) == "[user] hi</s>"


def test_sharded_safetensors_and_transformers_4_rope_keys_import(llama_folder, tmp_path):
    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.hf_import import import_hf

    model = transformers.LlamaForCausalLM.from_pretrained(llama_folder)
    model.save_pretrained(tmp_path / "sharded", max_shard_size="60KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(llama_folder / name, tmp_path / "sharded" / name)
    folder = edited_copy(tmp_path / "sharded", tmp_path / "v4", rope_parameters=None, rope_theta=1234.0)
    loaded = load_checkpoint(import_hf(folder, tmp_path / "checkpoint").checkpoint)
    assert loaded.config.rope_theta == 1234.0
    direct = load_checkpoint(import_hf(llama_folder, tmp_path / "direct").checkpoint)
    for name, tensor in direct.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


REFUSED_LLAMA = {
    "rope scaling": (dict(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
                     "unsupported rope scaling 'linear'"),
    "llama3 rope": (dict(rope_parameters=None, rope_scaling={"rope_type": "llama3", "factor": 8.0}),
                    "unsupported rope scaling 'llama3'"),
    "partial rotary": (dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4, "partial_rotary_factor": 0.5}),
                       "partial_rotary_factor=0.5"),
    "activation": (dict(hidden_act="gelu"), "unsupported hidden_act='gelu'.*silu"),
    "bias layout": (dict(attention_bias=True, mlp_bias=False), "bias layout attention_bias=True, mlp_bias=False"),
    "architecture": (dict(architectures=["GemmaForCausalLM"]), "architecture GemmaForCausalLM is not supported"),
    "missing field": (dict(num_hidden_layers=None), "config.json lacks n_layer"),
}  # fmt: skip


@pytest.mark.parametrize("case", REFUSED_LLAMA)
def test_unsupported_llama_configs_are_refused_and_nothing_is_written(llama_folder, tmp_path, case):
    from gptdeploy.hf_import import import_hf

    changes, message = REFUSED_LLAMA[case]
    folder = edited_copy(llama_folder, tmp_path / "hf", **changes)
    with pytest.raises(ConfigError, match=message):
        import_hf(folder, tmp_path / "checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(activation_function="gelu"), "activation_function='gelu'.*tanh approximation"),
        (dict(activation_function="relu"), "activation_function='relu'"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx=True"),
        (dict(add_cross_attention=True), "add_cross_attention=True"),
    ],
)
def test_unsupported_gpt2_configs_are_refused(tmp_path, changes, message):
    from gptdeploy.hf_config import gpt2_config

    with pytest.raises(ConfigError, match=message):
        gpt2_config({"vocab_size": 64, "n_positions": 32, "n_layer": 1, "n_head": 2, "n_embd": 16, **changes})


def test_unusable_files_are_refused_clearly(llama_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    from gptdeploy.hf_import import import_hf

    with pytest.raises(CheckpointError, match="config.json is missing"):
        import_hf(tmp_path, tmp_path / "out")
    pickled = edited_copy(llama_folder, tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="pytorch_model.bin: pickled weights are never loaded"):
        import_hf(pickled, tmp_path / "out")
    no_tokenizer = edited_copy(llama_folder, tmp_path / "no-tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    with pytest.raises(TokenizerError, match="has no tokenizer.json"):
        import_hf(no_tokenizer, tmp_path / "out")
    extra = edited_copy(llama_folder, tmp_path / "extra")
    tensors = load_file(extra / "model.safetensors")
    save_file({**tensors, "model.layers.0.self_attn.q_norm.weight": torch.ones(8)}, extra / "model.safetensors")
    with pytest.raises(CheckpointError, match="no place for: model.layers.0.self_attn.q_norm.weight"):
        import_hf(extra, tmp_path / "out")
    mismatched = edited_copy(llama_folder, tmp_path / "mismatched", intermediate_size=96)
    with pytest.raises(CheckpointError, match=r"mlp.c_fc.weight has shape \(176, 64\), the config implies \(192, 64\)"):
        import_hf(mismatched, tmp_path / "out")
    no_eos = edited_copy(llama_folder, tmp_path / "no-eos")
    (no_eos / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>"}))
    with pytest.raises(TokenizerError, match="names no eos_token"):
        import_hf(no_eos, tmp_path / "out")
    small_vocab = edited_copy(llama_folder, tmp_path / "small-vocab", vocab_size=200)
    with pytest.raises((TokenizerError, CheckpointError), match="300 tokens but the model's vocabulary only 200"):
        import_hf(small_vocab, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_existing_checkpoint_is_only_replaced_with_force(llama_folder, tmp_path):
    from gptdeploy.hf_import import import_hf

    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="already exists; pass --force"):
        import_hf(llama_folder, tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / "keep.txt").read_text() == "mine"
    import_hf(llama_folder, tmp_path / "checkpoint", force=True)
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]  # fmt: skip


def test_an_imported_model_exports_to_a_bundle_with_parity(tmp_path):
    """Import -> ONNX bundle -> ONNX Runtime, and the bundle's logits are transformers' logits."""
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")
    from gptdeploy.export.pipeline import export_bundle
    from gptdeploy.hf_import import import_hf
    from gptdeploy.runtimes.base import load_runtime

    reference = make_hf_folder(tmp_path / "hf", "gpt2", **CASES["gpt2-3-heads-odd-vocab"][1])
    checkpoint = import_hf(tmp_path / "hf", tmp_path / "checkpoint").checkpoint
    result = export_bundle(checkpoint, tmp_path / "bundle", tasks=False)
    assert result.parity, result.parity.failures
    with load_runtime(tmp_path / "bundle") as runtime:
        ids = np.array([runtime.tokenizer.encode(PROMPT, bos=True)])
        runtime.reset()
        logits = runtime.prefill(0, ids[0], all_logits=True)
    with torch.no_grad():
        expected = reference(torch.from_numpy(ids)).logits[0].numpy()
    assert np.abs(logits - expected).max() <= 1e-4 * np.abs(expected).max()


def test_cli_import_hf(llama_folder, tmp_path):
    from click.testing import CliRunner

    from gptdeploy.cli import main

    runner = CliRunner()
    out = runner.invoke(main, ["import-hf", str(llama_folder), "-o", str(tmp_path / "checkpoint"), "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["family"] == "llama" and report["config"]["n_kv_head"] == 2
    bad = edited_copy(llama_folder, tmp_path / "bad", hidden_act="relu")
    out = runner.invoke(main, ["import-hf", str(bad), "-o", str(tmp_path / "other")])
    assert out.exit_code == 1 and "Error: unsupported hidden_act='relu'" in out.output
    assert "Traceback" not in out.output and not (tmp_path / "other").exists()


@pytest.mark.parametrize("location", ["../other/model.safetensors", "/etc/passwd", "sub/../../x.safetensors"])
def test_an_index_naming_files_outside_the_folder_is_refused_before_reading(llama_folder, tmp_path, location):
    from gptdeploy.hf_import import import_hf

    folder = edited_copy(llama_folder, tmp_path / "hostile")
    (tmp_path / "other").mkdir()
    (folder / "model.safetensors").rename(tmp_path / "other" / "model.safetensors")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"lm_head.weight": location}}))
    with pytest.raises(CheckpointError, match="weight file named in model.safetensors.index.json .*refusing to open"):
        import_hf(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_hugging_face_cache_snapshot_imports_and_a_symlink_out_of_it_does_not(llama_folder, tmp_path):
    """Snapshots link their files into ../../blobs: allowed; a link out of the repository: refused."""
    import os

    from gptdeploy.hf_import import import_hf

    repo = tmp_path / "models--tiny"
    snapshot = repo / "snapshots" / "abc123"
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in llama_folder.iterdir():
        blob = repo / "blobs" / file.name
        blob.write_bytes(file.read_bytes())
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    assert import_hf(snapshot, tmp_path / "imported").parameters > 0
    (repo / "blobs" / "config.json").unlink()
    (tmp_path / "elsewhere.json").write_bytes((llama_folder / "config.json").read_bytes())
    (repo / "blobs" / "config.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(CheckpointError, match="config.json' resolves to .*outside the folder"):
        import_hf(snapshot, tmp_path / "refused")


def test_non_finite_weights_are_refused(llama_folder, tmp_path):
    from safetensors.torch import load_file, save_file

    from gptdeploy.hf_import import import_hf

    folder = edited_copy(llama_folder, tmp_path / "nan")
    tensors = load_file(folder / "model.safetensors")
    tensors["model.norm.weight"][0] = float("nan")
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="tensor model.norm.weight holds 1 non-finite values"):
        import_hf(folder, tmp_path / "out")
