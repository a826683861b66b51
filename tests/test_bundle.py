"""Bundles refuse to load when anything in them is not what the export wrote, each with its own message."""

import json
import shutil

import pytest

from gptdeploy.bundle import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    Artifact,
    add_artifact,
    folder_files,
    load_bundle,
    read_manifest,
    staged_folder,
)
from gptdeploy.errors import BundleError

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    from gptdeploy.checkpoint import save_checkpoint
    from gptdeploy.export.pipeline import export_bundle
    from tests.helpers import tiny_model

    root = tmp_path_factory.mktemp("bundle")
    save_checkpoint(root / "checkpoint", tiny_model(), tokenizer)
    export_bundle(root / "checkpoint", root / "bundle", tasks=False)
    return root / "bundle"


@pytest.fixture
def bundle(exported, tmp_path):
    return shutil.copytree(exported, tmp_path / "bundle")


def test_a_fresh_bundle_verifies_and_describes_itself(bundle):
    loaded = load_bundle(bundle)
    artifact = loaded.artifact("onnx", "fp32")
    assert artifact.files.keys() == {"decoder-fp32/model.onnx", "decoder-fp32/model.onnx.data"}
    assert artifact.details.parity["passed"] and artifact.opset == 18
    assert artifact.details.source == loaded.manifest["reference"]["checkpoint"]
    assert artifact.details.op_counts and artifact.details.size_bytes > 0
    assert loaded.manifest["io"]["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert loaded.config.n_layer == 2 and loaded.manifest["format_version"] == FORMAT_VERSION
    assert {"genai_config.json", "tokenizer_config.json"} <= loaded.manifest["files"].keys()  # onnxruntime-genai's


def test_an_edited_genai_config_is_caught_and_a_deliberate_one_is_recorded(bundle):
    from gptdeploy.export.genai_config import write_bundle_genai_config

    add_artifact(bundle, copy_of_the_graph(bundle, "decoder-copy"))
    write_bundle_genai_config(bundle, artifact="onnx-copy")
    genai = json.loads((bundle / "genai_config.json").read_text())
    assert genai["model"]["decoder"]["filename"] == "decoder-copy/model.onnx"
    load_bundle(bundle)
    (bundle / "genai_config.json").write_text("{}")
    with pytest.raises(BundleError, match="genai_config.json does not match its sha256"):
        load_bundle(bundle)


def test_a_flipped_byte_in_the_graph_is_caught(bundle):
    graph = bundle / "decoder-fp32" / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model.onnx does not match its sha256.*re-export"):
        load_bundle(bundle)


def test_truncated_external_data_is_caught(bundle):
    weights = bundle / "decoder-fp32" / "model.onnx.data"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(BundleError, match=r"model.onnx.data does not match its sha256 .*truncated"):
        load_bundle(bundle)


def test_an_edited_manifest_is_caught(bundle):
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["model"]["block_size"] = 4096
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="edited after export"):
        load_bundle(bundle)


def test_a_missing_tokenizer_is_named(bundle):
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json is missing"):
        load_bundle(bundle)


def test_a_bundle_from_an_earlier_format_asks_for_a_re_export(bundle):
    from gptdeploy.bundle import _write

    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    _write(bundle, {**manifest, "format_version": FORMAT_VERSION - 1})
    with pytest.raises(BundleError, match=f"format-{FORMAT_VERSION - 1} bundle from an earlier gptdeploy; re-export"):
        read_manifest(bundle)


def test_a_bundle_from_a_future_format_asks_for_an_upgrade(bundle):
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="upgrade gptdeploy"):
        read_manifest(bundle)


def test_a_folder_without_manifest_or_a_corrupt_one_is_refused(bundle, tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")
    (bundle / MANIFEST_FILE).write_text("{ truncated")
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(bundle)
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match="not a bundle"):
        load_bundle(bundle)


def test_asking_for_an_artifact_it_does_not_hold_lists_what_it_has(bundle):
    with pytest.raises(BundleError, match=r"no onnx/int8 artifact \(it has: onnx-fp32 \(onnx fp32\)\)"):
        load_bundle(bundle).artifact("onnx", "int8")
    with pytest.raises(BundleError, match=r"no 'onnx-int8' artifact"):
        load_bundle(bundle).artifact(name="onnx-int8")


def copy_of_the_graph(bundle, folder: str) -> Artifact:
    """A second artifact made the way every later stage makes one: staged, hashed, then registered."""
    with staged_folder(bundle, folder) as staging:
        shutil.copy(bundle / "decoder-fp32" / "model.onnx", staging / "model.onnx")
        shutil.copy(bundle / "decoder-fp32" / "model.onnx.data", staging / "model.onnx.data")
    return Artifact("onnx-copy", "onnx", "fp32", f"{folder}/model.onnx", folder_files(bundle, folder), 18)


def test_an_added_artifact_is_verified_listed_and_selectable_by_name(bundle):
    add_artifact(bundle, copy_of_the_graph(bundle, "decoder-copy"))
    loaded = load_bundle(bundle)
    assert [a.name for a in loaded.artifacts] == ["onnx-fp32", "onnx-copy"]
    assert loaded.artifact(name="onnx-copy").path == "decoder-copy/model.onnx"
    assert not list(bundle.glob(".*partial*"))
    (bundle / "decoder-copy" / "model.onnx.data").write_bytes(b"truncated")
    with pytest.raises(BundleError, match="decoder-copy/model.onnx.data does not match its sha256"):
        load_bundle(bundle)


def test_adding_an_existing_name_needs_replace_and_leaves_the_manifest_alone(bundle):
    add_artifact(bundle, copy_of_the_graph(bundle, "decoder-copy"))
    before = (bundle / MANIFEST_FILE).read_bytes()
    with pytest.raises(BundleError, match="already has an artifact 'onnx-copy'; pass --force"):
        add_artifact(bundle, copy_of_the_graph(bundle, "decoder-copy"))
    assert (bundle / MANIFEST_FILE).read_bytes() == before
    add_artifact(bundle, copy_of_the_graph(bundle, "decoder-copy"), replace_existing=True)
    assert [a.name for a in load_bundle(bundle).artifacts] == ["onnx-fp32", "onnx-copy"]


def test_a_failed_stage_leaves_no_folder_behind(bundle):
    listing = sorted(path.name for path in bundle.iterdir())
    with pytest.raises(RuntimeError), staged_folder(bundle, "decoder-broken") as staging:
        (staging / "model.onnx").write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert sorted(path.name for path in bundle.iterdir()) == listing


def test_a_manifest_without_a_format_version_is_malformed_not_too_new(bundle):
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    del manifest["format_version"]
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"is malformed \(format_version None is not a positive integer\); re-export"):
        read_manifest(bundle)


def test_a_backend_is_refused_an_artifact_of_another_kind(bundle):
    loaded = load_bundle(bundle)
    assert loaded.runnable("onnx", "auto").name == "onnx-fp32"
    with pytest.raises(BundleError, match="'onnx-fp32' is a onnx artifact; this backend runs tensorrt ones"):
        loaded.runnable("tensorrt", name="onnx-fp32")
