"""TensorRT on a GPU: build, run, and parity against PyTorch on the same GPU for fp32, fp16 and int8 engines."""

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from gptdeploy.errors import BackendError


def open_engine(bundle, artifact):
    from gptdeploy.runtimes.base import load_runtime

    return load_runtime(bundle, backend="tensorrt", device="cuda:0", artifact=artifact.name, max_slots=8)


def test_fp32_engine_matches_pytorch_on_the_same_gpu(bundle, gpu_golden):
    import tensorrt

    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.tensorrt_build import build_engine
    from gptdeploy.parity import check_parity

    artifact = build_engine(bundle).artifact
    details = load_bundle(bundle).artifact(name="tensorrt-fp32").details  # verified, hashes included
    assert details.recipe["tensorrt_version"] == tensorrt.__version__ and len(details.recipe["profiles"]) == 2
    assert details.parity["failures"] == [] and details.recipe["tf32"] is False
    with open_engine(bundle, artifact) as runtime:
        report = check_parity(runtime, gpu_golden)
    assert report, report.failures
    assert report.greedy_identical == report.prompts


@pytest.mark.parametrize("precision", ["fp16", "int8-static"])
def test_fp16_and_int8_engines_stay_within_their_budget(bundle, gpu_golden, precision):
    quantize = pytest.importorskip("gptdeploy.export.quantize", reason="quantization needs onnxruntime's tools")
    from gptdeploy.export.tensorrt_build import build_engine
    from gptdeploy.parity import check_parity

    graph = quantize.quantize_bundle(bundle, precision, tasks=False).artifact
    artifact = build_engine(bundle, source=graph.name).artifact
    assert artifact.precision == graph.precision != "fp32"
    with open_engine(bundle, artifact) as runtime:
        report = check_parity(runtime, gpu_golden)  # tolerance of the graph's precision
    assert report, report.failures


def test_tokens_appended_to_a_cache_equal_a_full_recompute(bundle):
    from gptdeploy.export.tensorrt_build import build_engine

    artifact = build_engine(bundle).artifact
    with open_engine(bundle, artifact) as runtime:
        ids = np.array(runtime.tokenizer.encode("Mia lives in Riverton with her dog", bos=True))
        runtime.reset()
        full = runtime.prefill(0, ids, all_logits=True)
        head = runtime.prefill(1, ids[:4], all_logits=True)
        tail = runtime.prefill(1, ids[4:], all_logits=True)  # several tokens on a cache
        assert np.abs(np.concatenate([head, tail]) - full).max() <= 1e-4
        runtime.free(0)
        step = runtime.decode([1], ids[:1])
        assert step.shape == (1, runtime.info.vocab_size) and np.isfinite(step).all()


def test_timing_cache_is_saved_and_reused(bundle, tmp_path, caplog):
    from gptdeploy.export.tensorrt_build import build_engine

    cache = tmp_path / "timing.cache"
    build_engine(bundle, timing_cache=cache, workspace=256 * 2**20)
    assert cache.stat().st_size > 0
    with caplog.at_level(logging.INFO, logger="gptdeploy"):
        build_engine(bundle, timing_cache=cache, force=True)
    assert "reusing the timing cache" in caplog.text


def test_an_engine_for_another_gpu_is_refused(bundle):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.tensorrt_build import build_engine
    from gptdeploy.runtimes.trt_runtime import TrtRuntime
    from gptdeploy.tokenizer import Tokenizer

    artifact = build_engine(bundle).artifact
    loaded = load_bundle(bundle)
    foreign = {**artifact.details.recipe, "compute_capability": "5.3", "gpu": "Jetson Nano"}
    with pytest.raises(BackendError, match="built for Jetson Nano .*rebuild it here: gptdeploy build-engine"):
        TrtRuntime(loaded.file(artifact.path), loaded.config, Tokenizer.load(loaded.path), "cuda:0",
                   recipe=foreign, rebuild="gptdeploy build-engine X")  # fmt: skip


def test_cli_builds_an_engine_and_generates_with_it(bundle):
    from gptdeploy.cli import main

    built = CliRunner().invoke(main, ["build-engine", str(bundle), "--json"])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["artifact"] == "tensorrt-fp32"
    result = CliRunner().invoke(main, ["generate", str(bundle), "--artifact", "tensorrt-fp32", "--device", "cuda",
                                       "-p", "Mia lives in", "--max-new-tokens", "8", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("variant", ["qwen2", "qwen3"])
def test_engines_of_the_qwen_options_match_pytorch(tmp_path, tokenizer, variant):
    """q/k/v-only biases (Qwen2), per-head q/k norm and heads wider than n_embd / n_head (Qwen3), on TensorRT."""
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from gptdeploy.export.tensorrt_build import build_engine
    from gptdeploy.golden import compute_golden
    from gptdeploy.parity import check_parity
    from gptdeploy.runtimes.torch_runtime import TorchRuntime
    from tests.helpers import MODEL_VARIANTS, tiny_model

    save_checkpoint(tmp_path / "checkpoint", tiny_model(seed=5, **MODEL_VARIANTS[variant]), tokenizer)
    bundle = export_bundle(tmp_path / "checkpoint", tmp_path / "bundle", tasks=False).bundle
    artifact = build_engine(bundle)
    with TorchRuntime.load(tmp_path / "checkpoint", device="cuda") as reference:
        golden = compute_golden(reference)
    with open_engine(bundle, artifact) as runtime:
        report = check_parity(runtime, golden)
    assert report, report.failures


@pytest.mark.parametrize("source", ["onnx-fp32", "onnx-fused-std"])
def test_an_encoder_engine_gives_the_references_fill_mask_and_labels(classifier_dir, tmp_path, source):
    from gptdeploy.encoder import classify, fill_mask
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.pipeline import export_bundle
    from gptdeploy.export.tensorrt_build import build_engine

    bundle = tmp_path / "bundle"
    export_bundle(classifier_dir, bundle)
    if source == "onnx-fused-std":
        optimize_bundle(bundle, "tensorrt")
    artifact = build_engine(bundle, source).artifact  # judged by the encoder parity of the stage runner
    assert artifact.details.parity["passed"] and len(artifact.details.recipe["profiles"]) == 1
    texts = ["Mia lives in <|mask|>.", "Tom had <|mask|> apples.", "Then bake it."] * 4  # more than one batch
    on_engine = fill_mask(bundle, texts[:2], artifact=artifact.name)
    on_ort = fill_mask(bundle, texts[:2], backend="onnxruntime")

    def top_k(results):
        return [[[p["token_id"] for p in mask] for mask in result.predictions] for result in results]

    assert top_k(on_engine) == top_k(on_ort)
    labels = [r.label for r in classify(bundle, texts, artifact=artifact.name)]
    assert labels == [r.label for r in classify(classifier_dir, texts)]
