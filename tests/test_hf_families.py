"""Each newly importable family through the whole build: import -> ONNX bundle -> fusion (both targets) -> every
quantization scheme, each artifact run on ONNX Runtime against transformers' logits or the golden references.

The folders use transformers' default initializer range (0.02), the scale of trained weights: quantizing the large
random weights the import parity tests use would measure the random weights, not the transforms. The accuracy budgets
are held on a trained model (tests/export/test_quantize.py, the demo); here every scheme runs under an explicit loose
budget and the test asserts that the quantized graph was built and decodes.
"""

import shutil

import numpy as np
import pytest

from gptdeploy.parity import Tolerance
from tests.hf_models import CASES, PROMPT, make_hf_folder, torch

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")

LOOSE = Tolerance(max_logit_diff=10.0, mean_kl=10.0, near_tie=100.0, top1_agreement=0.0, max_accuracy_drop=100.0)
# Head sizes ONNX Runtime's GroupQueryAttention runs (multiples of 16 with rotary positions); the import tests cover
# the odd ones, and tests/export/test_slot_graph.py the refusal of the rest.
FAMILIES = {"qwen2": "qwen2-gqa-4-to-2", "qwen3": "qwen3-heads-32", "mistral": "mistral-mqa-3-heads",
            "phi3": "phi3-5-heads"}  # fmt: skip


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def imported(request, tmp_path_factory):
    """(transformers model, bundle) for one family: imported, exported, parity checked at export."""
    from gptdeploy.export.pipeline import export_bundle
    from gptdeploy.hf_import import import_hf

    root = tmp_path_factory.mktemp(request.param)
    family, overrides = CASES[FAMILIES[request.param]]
    reference = make_hf_folder(root / "hf", family, **{**overrides, "initializer_range": 0.02})
    checkpoint = import_hf(root / "hf", root / "checkpoint").checkpoint
    result = export_bundle(checkpoint, root / "bundle", tasks=False)
    assert result.parity, result.parity.failures
    return reference, result.bundle


def run_prompt(bundle, artifact: str) -> np.ndarray:
    from gptdeploy.runtimes.base import load_runtime

    with load_runtime(bundle, "onnxruntime", artifact=artifact) as runtime:
        runtime.reset()
        return runtime.prefill(0, runtime.tokenizer.encode(PROMPT, bos=True), all_logits=True)


def transformers_logits(reference, bundle) -> np.ndarray:
    from gptdeploy.tokenizer import Tokenizer

    ids = torch.tensor([Tokenizer.load(bundle).encode(PROMPT, bos=True)])
    with torch.no_grad():
        return reference(ids).logits[0].numpy()


def test_the_fp32_bundle_computes_what_transformers_computes(imported):
    reference, bundle = imported
    expected = transformers_logits(reference, bundle)
    assert np.abs(run_prompt(bundle, "onnx-fp32") - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("target", ["onnxruntime", "tensorrt"])
def test_attention_fuses_once_per_layer_with_parity(imported, tmp_path, target):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.export.fusion import optimize_bundle

    reference, source = imported
    bundle = shutil.copytree(source, tmp_path / "bundle")
    result = optimize_bundle(bundle, target)  # raises unless fp32 parity holds
    config = load_bundle(bundle).config
    ops = result.artifact.details.op_counts
    attention = "com.microsoft::GroupQueryAttention" if target == "onnxruntime" else "Attention"
    assert ops[attention] == config.n_layer
    if target == "onnxruntime":  # the slot graph: every norm fused, Qwen3's per-head q/k norms included
        assert ops["SimplifiedLayerNormalization"] == 1 + (2 * config.n_layer if config.qk_norm else 0)
        assert "ReduceMean" not in ops
    expected = transformers_logits(reference, bundle)
    assert np.abs(run_prompt(bundle, result.artifact.name) - expected).max() <= 1e-4 * np.abs(expected).max()


def test_every_quantization_scheme_builds_and_decodes(imported, tmp_path):
    from gptdeploy.export.quantize import SCHEMES, quantize_bundle
    from gptdeploy.generate import GenerationConfig, generate
    from gptdeploy.runtimes.base import load_runtime

    _, source = imported
    bundle = shutil.copytree(source, tmp_path / "bundle")
    for precision in SCHEMES:
        # Raises unless the graph holds the scheme's quantized operators. Dynamic int8 may keep a layer or two in
        # fp32: its activation scales span the whole batch, so a padded batch can flip near-ties of random weights.
        result = quantize_bundle(bundle, precision, tolerance=LOOSE, tasks=False)
        assert result.parity.top1_agreement > 0.5, (precision, result.steps)
        with load_runtime(bundle, artifact=result.artifact.name) as runtime:
            tokens = generate(runtime, PROMPT, GenerationConfig(max_new_tokens=4, ignore_eos=True)).tokens
        assert len(tokens) == 4
