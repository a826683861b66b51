"""An encoder's bundle: the graph without a cache, golden references, parity, variants through the stage runner, and
fill-mask / classify on ONNX Runtime giving the reference's answers."""

import importlib.util
import json

import numpy as np
import pytest

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")

from gptdeploy.bundle import load_bundle
from gptdeploy.encoder import classify, encode_texts, fill_mask
from gptdeploy.errors import BackendError, ExportError
from gptdeploy.export.fusion import optimize_bundle
from gptdeploy.export.pipeline import export_bundle
from gptdeploy.export.quantize import quantize_bundle
from gptdeploy.parity import TOLERANCES
from gptdeploy.runtimes.base import load_encoder

TEXTS = ["Mia lives in <|mask|>.", "Tom had <|mask|> apples and gave 5 to <|mask|>."]


@pytest.fixture(scope="module")
def encoder_bundle(tmp_path_factory, classifier_dir):
    path = tmp_path_factory.mktemp("encoder") / "bundle"
    export_bundle(classifier_dir, path)
    return path


def test_the_bundle_holds_an_encoder_graph_that_passed_fp32_parity(encoder_bundle):
    bundle = load_bundle(encoder_bundle)
    assert bundle.manifest["io"] == {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits", "class_scores"]}
    assert bundle.manifest["reference"]["labels"] == ["no", "yes"]
    (artifact,) = bundle.artifacts
    parity = artifact.details.parity
    assert artifact.path.startswith("encoder-fp32/")  # not decoder-*: a reader of the folder sees what it holds
    assert artifact.name == "onnx-fp32" and parity["passed"] and parity["greedy_identical"] == parity["prompts"]
    assert parity["max_rel_logit_diff"] <= TOLERANCES["fp32"].max_logit_diff


def test_onnx_runtime_gives_the_references_answers(encoder_bundle, classifier_dir):
    on_torch, on_ort = fill_mask(classifier_dir, TEXTS), fill_mask(encoder_bundle, TEXTS, backend="onnxruntime")
    for reference, test in zip(on_torch, on_ort, strict=True):
        assert [[p["token_id"] for p in mask] for mask in test.predictions] == [
            [p["token_id"] for p in mask] for mask in reference.predictions
        ]
        assert test.filled == reference.filled
    texts = ["Then bake it for 20 minutes.", "Mia lives in Riverton.", "Once upon a time there was a toad."]
    labels = [r.label for r in classify(classifier_dir, texts)]
    assert [r.label for r in classify(encoder_bundle, texts)] == labels
    with load_encoder(classifier_dir) as reference, load_encoder(encoder_bundle) as graph:
        ids, mask = encode_texts(reference.tokenizer, texts, 128)
        expected, got = reference.run(ids, mask), graph.run(ids, mask)
        assert graph.info.backend == "onnxruntime"
    for name in ("logits", "class_scores"):
        scale = max(1.0, np.abs(expected[name]).max())
        assert np.abs(got[name] - expected[name]).max() / scale <= TOLERANCES["fp32"].max_logit_diff


def test_quantized_and_fused_encoders_pass_their_guardrails(encoder_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(encoder_bundle, bundle)
    for precision in ("int8", "fp16"):
        result = quantize_bundle(bundle, precision)
        assert result.artifact.details.parity["passed"], precision
    assert optimize_bundle(bundle, "tensorrt").artifact.details.recipe["fusions"]
    names = [artifact.name for artifact in load_bundle(bundle).artifacts]
    assert names == ["onnx-fp32", "onnx-int8", "onnx-fp16", "onnx-fused-std"]
    for name in ("onnx-int8", "onnx-fp16", "onnx-fused-std"):
        assert [r.label for r in classify(bundle, TEXTS, artifact=name)] == [r.label for r in classify(bundle, TEXTS)]
    with pytest.raises(ExportError, match="an encoder has no cache"):
        optimize_bundle(bundle, "onnxruntime")
    with pytest.raises(ExportError, match="int8-static calibrates on a decoder"):
        quantize_bundle(bundle, "int8-static")


def test_requests_an_encoder_cannot_serve_are_refused(encoder_bundle, classifier_dir, bundle_dir, tmp_path):
    with pytest.raises(ExportError, match="encoder does not do"):
        export_bundle(classifier_dir, tmp_path / "b", tasks=True)
    with pytest.raises(BackendError, match="holds a decoder"):
        fill_mask(bundle_dir, TEXTS[0])
    with pytest.raises(BackendError, match="is an encoder"):
        from gptdeploy.runtimes.base import load_runtime

        load_runtime(classifier_dir)


def test_the_cli_exports_and_runs_an_encoder(classifier_dir, tmp_path):
    from tests.test_cli import run

    run("export", classifier_dir, "-o", tmp_path / "b")
    data = json.loads(run("classify", tmp_path / "b", "Mia lives in Riverton.", "--json").stdout)
    assert data["results"][0]["label"] in ("no", "yes")
    assert "mask 1:" in run("fill-mask", tmp_path / "b", TEXTS[0], "--backend", "onnxruntime").output


def test_an_encoder_engine_has_one_profile_for_batches_of_whole_texts(classifier_dir):
    from gptdeploy.checkpoint import read_config
    from gptdeploy.export.tensorrt_build import ENCODER_BATCH, derive_profiles

    config, _ = read_config(classifier_dir)
    (profile,) = derive_profiles(config, 64)
    assert set(profile.shapes) == {"input_ids", "attention_mask"}
    assert profile.shapes["input_ids"][0] == (1, 1) and profile.shapes["input_ids"][2] == (ENCODER_BATCH, 64)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_an_encoder_engine_without_tensorrt_says_how_to_install_it(encoder_bundle):
    from gptdeploy.bundle import Artifact
    from gptdeploy.runtimes.base import open_encoder

    engine = Artifact("tensorrt-fp32", "tensorrt", "fp32", "engine-fp32/model.plan", {})
    with pytest.raises(BackendError, match="TensorRT is not installed"):
        open_encoder(load_bundle(encoder_bundle), engine)


def test_parity_rechecks_every_encoder_artifact(encoder_bundle, classifier_dir):
    from gptdeploy.parity import run_parity

    (report,) = run_parity(encoder_bundle, classifier_dir)
    assert report["artifact"] == "onnx-fp32" and report["passed"], report
    assert report["greedy_identical"] == report["prompts"] == 7
