"""What the engine builder decides without a GPU: profiles, network flags, names, and the clear error without TensorRT.

The build itself needs TensorRT and a GPU: tests/gpu/ runs it.
"""

import importlib.util
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from gptdeploy.bundle import artifact_folder
from gptdeploy.config import GPTConfig
from gptdeploy.errors import BackendError, ConfigError
from gptdeploy.export.tensorrt_build import derive_profiles, engine_name, network_flags
from gptdeploy.graph_contract import input_names

TINY = GPTConfig.preset("tiny", vocab_size=320)
no_tensorrt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")


def test_prefill_and_decode_profiles_cover_their_phase_only():
    names = input_names(TINY.n_layer)
    prefill, decode = derive_profiles(TINY, max_seq=128)
    assert (prefill.name, decode.name) == ("prefill", "decode")
    assert set(prefill.shapes) == set(decode.shapes) == set(names)
    H, D = TINY.kv_heads, TINY.head_dim
    assert prefill.shapes["input_ids"] == ((1, 1), (1, 32), (1, 128))  # one slot per call
    assert prefill.shapes["attention_mask"] == prefill.shapes["input_ids"]  # past 0: the mask is as long as the ids
    assert prefill.shapes["past_key_values.1.value"] == ((1, H, 0, D), (1, H, 0, D), (1, H, 0, D))
    assert decode.shapes["input_ids"] == ((1, 1), (1, 1), (1, 1))
    assert decode.shapes["past_key_values.0.key"] == ((1, H, 0, D), (1, H, 64, D), (1, H, 127, D))
    assert decode.shapes["attention_mask"] == ((1, 1), (1, 65), (1, 128))  # past + 1 new token
    for profile in (prefill, decode):
        for low, opt, high in profile.shapes.values():
            assert all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True))
    assert prefill.to_dict()["shapes"]["input_ids"] == [[1, 1], [1, 32], [1, 128]]


@pytest.mark.parametrize("seq", [1, 129])
def test_profiles_refuse_impossible_limits(seq):
    with pytest.raises(ConfigError, match="--max-seq must be in 2..128"):
        derive_profiles(TINY, seq)


def trt_surface(builder_flags: list[str], creation_flags: list[str], version: str) -> SimpleNamespace:
    """The enum members our capability checks look at, as the TensorRT bindings of that release define them."""
    return SimpleNamespace(
        __version__=version,
        BuilderFlag=SimpleNamespace(**{name: i for i, name in enumerate(builder_flags)}),
        NetworkDefinitionCreationFlag=SimpleNamespace(**{name: i for i, name in enumerate(creation_flags)}),
    )


def test_networks_are_strongly_typed_on_tensorrt_10_and_11():
    # enum members as listed in the tensorrt_cu12_bindings 10.16.1.11 and 11.4.0.106 wheels
    trt10 = trt_surface(["FP16", "BF16", "INT8", "DEBUG", "TF32"], ["EXPLICIT_BATCH", "STRONGLY_TYPED"], "10.16.1")
    trt11 = trt_surface(["DEBUG", "TF32"], ["STRONGLY_TYPED"], "11.4.0")
    trt86 = trt_surface(["FP16", "INT8", "TF32"], ["EXPLICIT_BATCH"], "8.6.1")
    assert network_flags(trt10) == 1 << 1  # ask for strongly typed: 10.x would otherwise build weakly typed
    assert network_flags(trt11) == 0  # always strongly typed; the flag is deprecated and ignored
    with pytest.raises(BackendError, match="no strongly typed networks"):
        network_flags(trt86)


def test_engine_names_follow_their_source():
    from gptdeploy.bundle import Artifact

    assert engine_name(Artifact("onnx-fp32", "onnx", "fp32", "p", {})) == "tensorrt-fp32"
    assert engine_name(Artifact("onnx-int8-static", "onnx", "int8", "p", {})) == "tensorrt-int8-static"
    assert artifact_folder("tensorrt", "tensorrt-int8-static") == "engine-int8-static"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tokenizer):
    """A bundle as the builder reads it: manifest, tokenizer, golden file, and a (tiny stand-in) decoder graph.

    The builder stops before reading the graph or the golden references in these tests, so no export is needed.
    """
    import onnx
    from onnx import TensorProto, helper

    from gptdeploy.bundle import GOLDEN_FILE, TOKENIZER_FILE, Artifact, ArtifactDetails, sha256_file, write_manifest
    from gptdeploy.bundle_write import add_artifact

    root = tmp_path_factory.mktemp("build") / "bundle"
    (root / "decoder").mkdir(parents=True)
    tokenizer.save(root / TOKENIZER_FILE)
    (root / GOLDEN_FILE).write_bytes(b"golden references are read only after a successful build")
    graph = helper.make_graph([helper.make_node("Identity", ["input_ids"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "S"])],
                              [helper.make_tensor_value_info("logits", TensorProto.INT64, ["B", "S"])])  # fmt: skip
    onnx.save(helper.make_model(graph), root / "decoder" / "model.onnx")
    files = {"decoder/model.onnx": sha256_file(root / "decoder" / "model.onnx")}
    write_manifest(root, TINY, {}, {"checkpoint": "none", "task_accuracy": None})
    parity = {"precision": "fp32", "passed": True, "failures": [], "max_abs_logit_diff": 0.0, "max_rel_logit_diff": 0.0,
              "mean_kl": 0.0, "top1_agreement": 1.0, "greedy_identical": 0, "prompts": 0}  # fmt: skip
    details = ArtifactDetails("none", {}, parity)
    add_artifact(root, Artifact("onnx-fp32", "onnx", "fp32", "decoder/model.onnx", files, 18, details))
    return root


@no_tensorrt
def test_building_without_tensorrt_says_how_to_install_it_and_changes_nothing(bundle):
    from gptdeploy.cli import main
    from gptdeploy.export.tensorrt_build import build_engine

    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(BackendError, match=r"TensorRT is not installed; pip install 'gptdeploy\[gpu\]'"):
        build_engine(bundle)
    result = CliRunner().invoke(main, ["build-engine", str(bundle), "--max-seq", "64"])
    assert result.exit_code == 1
    assert "Error: TensorRT is not installed; pip install 'gptdeploy[gpu]'" in result.output
    assert (bundle / "manifest.json").read_bytes() == before and not (bundle / "engine-fp32").exists()


def test_bad_limits_and_sources_are_refused_before_tensorrt_is_needed(bundle):
    from gptdeploy.cli import main

    result = CliRunner().invoke(main, ["build-engine", str(bundle), "--max-seq", "4096"])
    assert result.exit_code == 1 and "--max-seq must be in 2..128" in result.output
    result = CliRunner().invoke(main, ["build-engine", str(bundle), "--precision", "int8"])
    assert result.exit_code == 1 and "has no onnx/int8 artifact" in result.output
