"""Bundles refuse to load when anything in them is not what the export wrote, each with its own message."""

import json
import shutil

import pytest

from gptdeploy.bundle import FORMAT_VERSION, MANIFEST_FILE, Artifact, load_bundle, read_manifest
from gptdeploy.bundle_write import install_artifact, staged_folder
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
    genai = {"decoder-fp32/genai_config.json", "decoder-fp32/tokenizer.json", "decoder-fp32/tokenizer_config.json"}
    assert artifact.files.keys() == {"decoder-fp32/model.onnx", "decoder-fp32/model.onnx.data", *genai}
    assert artifact.details.parity["passed"] and artifact.opset == 18
    assert artifact.details.source == loaded.manifest["reference"]["checkpoint"]
    assert artifact.details.op_counts and artifact.details.size_bytes > 0
    assert loaded.manifest["io"]["inputs"][:3] == ["input_ids", "attention_mask", "position_ids"]
    assert loaded.config.n_layer == 2 and loaded.manifest["format_version"] == FORMAT_VERSION
    assert loaded.manifest["files"].keys() == {"tokenizer.json", "tokenizer_config.json", "golden.npz"}  # shared


def test_an_edited_genai_config_is_caught(bundle):
    """onnxruntime-genai's files are the artifact's own, hashed with its graph."""
    (bundle / "decoder-fp32" / "genai_config.json").write_text("{}")
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
    from gptdeploy.bundle import write_manifest_dict

    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    write_manifest_dict(bundle, {**manifest, "format_version": FORMAT_VERSION - 1})
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


def add_copy_of_the_graph(bundle, replace_existing: bool = False) -> Artifact:
    """A second artifact made the way every later stage makes one: staged, then moved into place and registered."""
    with staged_folder(bundle) as staging:
        shutil.copy(bundle / "decoder-fp32" / "model.onnx", staging / "model.onnx")
        shutil.copy(bundle / "decoder-fp32" / "model.onnx.data", staging / "model.onnx.data")
        details = load_bundle(bundle).artifact(name="onnx-fp32").details
        copy = Artifact("onnx-copy", "onnx", "fp32", "model.onnx", {}, 18, details)
        return install_artifact(bundle, staging, copy, replace_existing)


def test_an_added_artifact_is_verified_listed_and_selectable_by_name(bundle):
    add_copy_of_the_graph(bundle)
    loaded = load_bundle(bundle)
    assert [a.name for a in loaded.artifacts] == ["onnx-fp32", "onnx-copy"]
    assert loaded.artifact(name="onnx-copy").path == "decoder-copy/model.onnx"
    assert not [path.name for path in bundle.glob(".*") if path.name != ".lock"]
    (bundle / "decoder-copy" / "model.onnx.data").write_bytes(b"truncated")
    with pytest.raises(BundleError, match="decoder-copy/model.onnx.data does not match its sha256"):
        load_bundle(bundle)


def test_adding_an_existing_name_needs_replace_and_leaves_the_manifest_alone(bundle):
    add_copy_of_the_graph(bundle)
    before = (bundle / MANIFEST_FILE).read_bytes()
    with pytest.raises(BundleError, match="already has an artifact 'onnx-copy'; pass --force"):
        add_copy_of_the_graph(bundle)
    assert (bundle / MANIFEST_FILE).read_bytes() == before
    replaced = add_copy_of_the_graph(bundle, replace_existing=True)
    assert replaced.path == "decoder-copy.2/model.onnx"  # the old version kept its folder until the commit
    assert [a.name for a in load_bundle(bundle).artifacts] == ["onnx-fp32", "onnx-copy"]
    assert not (bundle / "decoder-copy").exists()
    assert add_copy_of_the_graph(bundle, replace_existing=True).path == "decoder-copy/model.onnx"
    assert not (bundle / "decoder-copy.2").exists()


def test_a_failed_stage_leaves_no_folder_behind(bundle):
    listing = sorted(path.name for path in bundle.iterdir())
    with pytest.raises(RuntimeError), staged_folder(bundle) as staging:
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


def edit_manifest(bundle, edit) -> None:
    """Change the manifest and re-checksum it, as someone handing out a hostile bundle would."""
    from gptdeploy.bundle import _checksum

    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    manifest.pop("checksum")
    edit(manifest)
    (bundle / MANIFEST_FILE).write_text(json.dumps({**manifest, "checksum": _checksum(manifest)}))  # ASCII escapes


def _repoint(manifest, path: str) -> None:
    """Move the artifact (every file of its folder) to the folder of `path`."""
    artifact, folder = manifest["artifacts"][0], path.rsplit("/", 1)[0]
    artifact["files"] = {f"{folder}/{name.rsplit('/', 1)[1]}": digest for name, digest in artifact["files"].items()}
    artifact["path"] = path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: _repoint(m, "../outside/model.onnx"), "artifact 'onnx-fp32' file '../outside/.*' leaves"),
        (lambda m: _repoint(m, "/tmp/outside/model.onnx"), "file '/tmp/outside/.*' is an absolute path"),
        (lambda m: m["files"].update({"../../../../../../etc/passwd": "0" * 64}), "shared file '../../.*leaves"),
        (lambda m: m["artifacts"][0].update(path="tokenizer.json"), "path 'tokenizer.json' is not one of its files"),
        (lambda m: m["artifacts"][0].update(name="x/../../victim"), "artifact name 'x/../../victim' is not allowed"),
        (lambda m: m["artifacts"][0].update(kind="script"), "is of kind 'script'"),
        (lambda m: m["artifacts"].append(dict(m["artifacts"][0], name="twin")), "artifact 'onnx-fp32' uses it too"),
        (lambda m: m["artifacts"][0]["details"]["parity"].update(passed="yes"), "mistyped passed"),
        (lambda m: m["artifacts"][0]["details"].update(size_bytes="big"), "field size_bytes must be int"),
        (lambda m: m["artifacts"][0].update(details=None), "artifact 'onnx-fp32' has no details"),
        (lambda m: m["artifacts"][0].pop("opset"), "an artifact lacks a field gptdeploy writes"),
        (lambda m: m["model"].pop("vocab_size"), "model must list every model config field"),
        (lambda m: m["model"].update(n_layer=3), "io does not list gptdeploy's graph inputs and outputs for 3"),
        (lambda m: m.update(reference="x"), "reference missing or of the wrong type"),
        (lambda m: m["reference"].update(checkpoint="\udcff"), "is corrupt .*surrogates not allowed"),
    ],
)
def test_a_hostile_re_checksummed_manifest_is_refused_before_anything_is_opened(bundle, edit, message):
    edit_manifest(bundle, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle, verify=False)


@pytest.mark.parametrize("name", ["tokenizer.json", "golden.npz", "decoder-fp32", "decoder-fp32/model.onnx.data"])
def test_a_file_or_folder_symlinked_out_of_the_bundle_is_not_followed(bundle, tmp_path, name):
    outside = tmp_path / "outside"
    shutil.move(bundle / name, outside)
    (bundle / name).symlink_to(outside, target_is_directory=outside.is_dir())
    with pytest.raises(BundleError, match="resolves to .*outside the folder \\(through a symlink\\); refusing"):
        load_bundle(bundle)


GRAPH = "decoder-fp32/model.onnx"


def test_graph_weights_must_be_files_of_the_artifact(bundle):
    """External data pointing elsewhere in (or out of) the bundle is refused even when the hashes are right."""
    import onnx

    from gptdeploy.bundle import sha256_file

    graph = bundle / "decoder-fp32" / "model.onnx"
    for location, message in [("../golden.npz", "leaves the folder"), ("other.data", "is not one of artifact")]:
        model = onnx.load(str(graph), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = location
        onnx.save(model, str(graph))
        digest = sha256_file(graph)
        edit_manifest(bundle, lambda m, digest=digest: m["artifacts"][0]["files"].update({GRAPH: digest}))
        with pytest.raises(BundleError, match=f"external data of .* {message}|from {location}, which {message}"):
            load_bundle(bundle)


def test_every_file_of_a_bundle_and_its_checkpoint_has_normal_permissions(bundle, exported):
    """Whatever library wrote a file (safetensors, the exporter, ONNX Runtime's quantizers), it reads like the rest."""
    from gptdeploy.export.quantize import quantize_bundle
    from gptdeploy.fileio import normal_file_mode
    from gptdeploy.parity import Tolerance

    quantize_bundle(bundle, "int8", tasks=False, tolerance=Tolerance(10.0, 10.0, 100.0, 0.0))
    files = [p for root in (bundle, exported.parent / "checkpoint") for p in root.rglob("*") if p.is_file()]
    modes = {p.as_posix(): p.stat().st_mode & 0o777 for p in files if p.name != ".lock"}
    assert modes == dict.fromkeys(modes, normal_file_mode())


def test_an_artifact_path_naming_a_file_that_is_no_graph_is_refused_by_name(bundle):
    """onnx would parse a .json path as JSON-serialized protobuf; a bundle's graph is read as binary protobuf only."""
    from gptdeploy.runtimes.base import load_runtime

    edit_manifest(bundle, lambda m: m["artifacts"][0].update(path="decoder-fp32/genai_config.json"))
    with pytest.raises(BundleError, match="genai_config.json is not an ONNX graph"):
        load_runtime(bundle, artifact="onnx-fp32")
