"""config.json -> GPTConfig: every family's fields, and the rotary settings resolved exactly as transformers does."""

import json

import pytest

from gptdeploy.errors import ConfigError
from tests.test_hf_import import edited_copy, make_hf_folder

transformers = pytest.importorskip("transformers", reason="transformers is optional (the dev extra installs it)")
torch = pytest.importorskip("torch")

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
                                 "rope_theta 999.0 .* and 777.0"),
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
