import pytest

from gptdeploy.errors import ExportError

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")


@pytest.fixture
def checkpoint(tmp_path, tokenizer):
    from gptdeploy.checkpoint import save_checkpoint
    from tests.helpers import tiny_model

    return save_checkpoint(tmp_path / "checkpoint", tiny_model(), tokenizer)


def test_an_existing_bundle_is_only_replaced_with_force(checkpoint, tmp_path):
    from gptdeploy.export.pipeline import export_bundle

    (tmp_path / "bundle").mkdir()
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_bundle(checkpoint, tmp_path / "bundle", tasks=False)
    result = export_bundle(checkpoint, tmp_path / "bundle", tasks=False, force=True)
    assert result.parity and (tmp_path / "bundle" / "manifest.json").is_file()


def test_failing_parity_fails_the_export_and_leaves_nothing(checkpoint, tmp_path, monkeypatch):
    from gptdeploy import parity
    from gptdeploy.export.pipeline import export_bundle

    impossible = parity.Tolerance(max_logit_diff=1.0, mean_kl=1.0, near_tie=0.0, top1_agreement=1.01)
    monkeypatch.setitem(parity.TOLERANCES, "fp32", impossible)
    with pytest.raises(ExportError, match="onnx-fp32 missed its budget against the PyTorch reference: top-1 agreement"):
        export_bundle(checkpoint, tmp_path / "bundle", tasks=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


@pytest.mark.parametrize("variant", ["gpt2", "llama"])
def test_every_model_family_exports_with_passing_parity(tmp_path, tokenizer, variant):
    from gptdeploy.bundle import load_bundle
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from tests.helpers import MODEL_VARIANTS, tiny_model

    checkpoint = save_checkpoint(tmp_path / "checkpoint", tiny_model(**MODEL_VARIANTS[variant]), tokenizer)
    result = export_bundle(checkpoint, tmp_path / "bundle", tasks=False)
    assert result.parity, result.parity.failures
    assert result.parity.max_rel_logit_diff <= 1e-4 and result.parity.greedy_identical == result.parity.prompts
    stored = load_bundle(tmp_path / "bundle").artifact("onnx", "fp32").details.parity
    assert stored["passed"] and stored["max_abs_logit_diff"] == result.parity.max_abs_logit_diff


def test_a_bundle_is_never_written_over_its_own_checkpoint(checkpoint):
    from gptdeploy.export.pipeline import export_bundle

    for target in (checkpoint, checkpoint.parent):
        with pytest.raises(ExportError, match="holds the checkpoint .* would delete the checkpoint"):
            export_bundle(checkpoint, target, tasks=False, force=True)
    assert (checkpoint / "model.safetensors").is_file()


def test_a_transform_that_fails_inside_a_library_is_an_export_error_and_changes_nothing(bundle_dir, tmp_path):
    import shutil

    from gptdeploy.export.pipeline import Stage, add_stage

    def broken(source, target):
        raise RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Load model failed\nstack")

    bundle = shutil.copytree(bundle_dir, tmp_path / "bundle")
    before = sorted(p.name for p in bundle.iterdir())
    stage = Stage("onnx-broken", "onnx", "fp32", broken, {})
    message = r"onnx-broken could not be made from model.onnx \(RuntimeError: \[ONNXRuntimeError\] .* stack\)"
    with pytest.raises(ExportError, match=message):
        add_stage(bundle, stage, tasks=False)
    assert sorted(p.name for p in bundle.iterdir()) == before


@pytest.mark.parametrize("name", ["x/../../../victim", "../escape", "a.b"])
def test_an_artifact_name_that_would_leave_the_bundle_is_refused(bundle_dir, tmp_path, name):
    import shutil

    from gptdeploy.export.quantize import quantize_bundle

    bundle = shutil.copytree(bundle_dir, tmp_path / "bundle")
    with pytest.raises(ExportError, match="is not allowed: use 1-100 letters"):
        quantize_bundle(bundle, "int8", name=name, tasks=False)
    assert not (tmp_path / "victim").exists() and not (tmp_path / "escape").exists()


def test_a_quantization_that_changes_nothing_is_never_accepted(bundle_dir, tmp_path):
    """A transform that leaves every layer as it was matches the reference perfectly; the guardrail must still
    refuse it, at every step of its layer sweep, and say so."""
    import shutil

    import onnx

    from gptdeploy.export.pipeline import Stage, Sweep, add_stage
    from gptdeploy.export.quantize_transforms import layer_groups_of, save_graph

    def unchanged(source, target, nodes=None):
        save_graph(onnx.load(str(source)), target)
        return {}

    bundle = shutil.copytree(bundle_dir, tmp_path / "bundle")
    manifest = (bundle / "manifest.json").read_text()
    sweep = Sweep(lambda source: layer_groups_of(source, n_layer=2, embeddings=True), unchanged)
    stage = Stage("onnx-int8", "onnx", "int8", unchanged, {}, sweep=sweep, marker_ops=("MatMulInteger",))
    message = (r"onnx-int8 changed nothing: the graph has none of MatMulInteger: nothing was transformed \(kept in "
               r"fp32: .*\) in any of the \d+ candidates tried; the bundle is unchanged")  # fmt: skip
    with pytest.raises(ExportError, match=message):
        add_stage(bundle, stage, source="onnx-fp32", tasks=False)
    assert (bundle / "manifest.json").read_text() == manifest
