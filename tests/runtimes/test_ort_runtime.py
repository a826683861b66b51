"""The ONNX Runtime backend refuses a graph its bundle does not describe, in one line, before running it."""

import json
import shutil

import pytest

from gptdeploy.errors import BackendError, BundleError
from gptdeploy.runtimes.base import load_runtime

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")


def hostile_copy(bundle_dir, tmp_path, edit):
    """A copy whose manifest was edited and re-checksummed."""
    from gptdeploy.bundle import MANIFEST_FILE, write_manifest_dict

    bundle = shutil.copytree(bundle_dir, tmp_path / "bundle")
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest.pop("checksum")
    edit(manifest, bundle)
    write_manifest_dict(bundle, manifest)
    return bundle


def more_layers(manifest, _bundle):
    from gptdeploy.graph_contract import input_names, output_names

    manifest["model"]["n_layer"] = 3
    manifest["io"] = {"inputs": input_names(3), "outputs": output_names(3)}


def not_a_graph(manifest, bundle):
    from gptdeploy.bundle import sha256_file

    shutil.copy(bundle / "tokenizer.json", bundle / "decoder-fp32" / "notes.onnx")
    artifact = manifest["artifacts"][0]
    artifact["path"] = "decoder-fp32/notes.onnx"
    artifact["files"]["decoder-fp32/notes.onnx"] = sha256_file(bundle / "decoder-fp32" / "notes.onnx")


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (more_layers, BackendError, "not gptdeploy's decoder IO for the 3 layers its model config says; re-export"),
        (lambda m, b: m["model"].update(vocab_size=400), BackendError, "logits has shape .* implies 400 at axis 2"),
        (lambda m, b: m["model"].update(n_head=2), BackendError, "implies 2 at axis 1; the bundle's manifest"),
        (not_a_graph, BundleError, "notes.onnx is not an ONNX graph \\(DecodeError"),
    ],
)
def test_a_manifest_that_does_not_describe_its_graph_is_refused(bundle_dir, tmp_path, edit, error, message):
    bundle = hostile_copy(bundle_dir, tmp_path, edit)
    with pytest.raises(error, match=message):
        load_runtime(bundle)


def test_runtime_arguments_are_checked_first(bundle_dir):
    with pytest.raises(BackendError, match="parameter max_slots must be int, got '8'"):
        load_runtime(bundle_dir, max_slots="8")
    with pytest.raises(BackendError, match="max_slots must be at least 1, got 0"):
        load_runtime(bundle_dir, max_slots=0)
