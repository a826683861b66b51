"""Paths from files and names stay inside their folder, checked before anything is opened."""

import os

import pytest

from gptdeploy.errors import BundleError, CheckpointError, ExportError
from gptdeploy.paths import check_name, external_data_files, inside


@pytest.mark.parametrize(
    ("relative", "problem"),
    [
        ("../outside/model.onnx", r"leaves the folder \(\.\.\)"),
        ("decoder/../../outside/model.onnx", r"leaves the folder \(\.\.\)"),
        ("../../../../../../etc/passwd", r"leaves the folder \(\.\.\)"),
        ("/etc/passwd", "is an absolute path"),
        ("C:/Windows/model.onnx", "is an absolute path"),
        ("decoder\\model.onnx", "not a portable relative path"),
        ("model\x00.onnx", "not a portable relative path"),
        ("", "is not a relative path"),
        (None, "is not a relative path"),
        (["model.onnx"], "is not a relative path"),
    ],
)
def test_a_path_leaving_its_folder_is_refused_with_what_and_the_fix(tmp_path, relative, problem):
    with pytest.raises(BundleError, match=f"manifest file .*{problem}.*; refusing to open it: re-export it"):
        inside(tmp_path, relative, BundleError, "manifest file", "re-export it")


def test_plain_relative_paths_pass_whether_or_not_they_exist(tmp_path):
    assert inside(tmp_path, "decoder-fp32/model.onnx", BundleError, "file", "") == tmp_path / "decoder-fp32/model.onnx"
    assert inside(tmp_path, "./tokenizer.json", BundleError, "file", "") == tmp_path / "tokenizer.json"


def test_symlinks_may_be_followed_only_while_they_stay_inside(tmp_path):
    folder, outside = tmp_path / "bundle", tmp_path / "outside"
    (folder / "decoder").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_text("not yours")
    (folder / "decoder" / "model.onnx").write_text("graph")
    (folder / "tokenizer.json").symlink_to(outside / "secret")
    (folder / "linked").symlink_to(outside, target_is_directory=True)
    (folder / "alias.onnx").symlink_to(folder / "decoder" / "model.onnx")
    (folder / "loop").symlink_to(folder / "loop")
    for name in ("tokenizer.json", "linked/secret", "linked"):
        with pytest.raises(CheckpointError, match="outside the folder \\(through a symlink\\)"):
            inside(folder, name, CheckpointError, "file", "restore it")
    assert inside(folder, "alias.onnx", CheckpointError, "file", "").read_text() == "graph"
    with pytest.raises(CheckpointError, match="cannot be resolved|outside the folder"):
        inside(folder, "loop/x", CheckpointError, "file", "")


def test_a_wider_root_admits_layouts_that_keep_their_files_elsewhere(tmp_path):
    """A Hugging Face cache snapshot: files are symlinks into ../../blobs."""
    repo = tmp_path / "models--x"
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc").write_text("weights")
    snapshot = repo / "snapshots" / "rev"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(repo / "blobs" / "abc", snapshot))
    with pytest.raises(CheckpointError, match="outside the folder"):
        inside(snapshot, "model.safetensors", CheckpointError, "file", "")
    assert inside(snapshot, "model.safetensors", CheckpointError, "file", "", within=repo).read_text() == "weights"
    with pytest.raises(CheckpointError, match="leaves the folder"):
        inside(snapshot, "../../blobs/abc", CheckpointError, "file", "", within=repo)  # `..` is refused regardless


@pytest.mark.parametrize("name", ["onnx-int8", "tensorrt-fused-std", "my_variant2", "A"])
def test_artifact_names_that_make_plain_folder_names_pass(name):
    assert check_name(name, ExportError) == name


@pytest.mark.parametrize("name", ["x/../../../victim", "../up", "/abs", "a.b", "", "-dash-first", "a b", "x" * 101, 3])
def test_artifact_names_that_would_make_other_paths_are_refused(name):
    with pytest.raises(ExportError, match="is not allowed: use 1-100 letters, digits"):
        check_name(name, ExportError)


def external_graph(folder, location: str):
    """A one-initializer ONNX graph whose weights are stored in the external file `location`."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder.mkdir(parents=True, exist_ok=True)
    weight = numpy_helper.from_array(np.ones((4,), dtype=np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [weight])  # fmt: skip
    model = helper.make_model(graph)
    onnx.external_data_helper.convert_model_to_external_data(model, location="weights.bin", size_threshold=0)
    onnx.save(model, folder / "model.onnx")
    stored = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    for tensor in stored.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(stored, folder / "model.onnx")
    return folder / "model.onnx"


@pytest.mark.parametrize(
    ("location", "problem"),
    [("../../outside/weights.bin", "leaves the folder"), ("/etc/passwd", "absolute path"), ("..", "leaves the folder")],
)
def test_external_data_must_stay_in_its_graphs_folder(tmp_path, location, problem):
    pytest.importorskip("onnx")
    graph = external_graph(tmp_path / "bundle" / "decoder", location)
    with pytest.raises(BundleError, match=f"the external data of 'w' in model.onnx .*{problem}"):
        external_data_files(graph, BundleError, "re-export it")


def test_external_data_inside_is_listed_and_a_file_that_is_no_graph_is_named(tmp_path):
    pytest.importorskip("onnx")
    assert external_data_files(external_graph(tmp_path, "weights.bin"), BundleError, "") == ["weights.bin"]
    (tmp_path / "notes.onnx").write_text('{"this": "is JSON"}')
    with pytest.raises(BundleError, match=r"notes.onnx is not an ONNX graph \(DecodeError"):
        external_data_files(tmp_path / "notes.onnx", BundleError, "re-export it")
