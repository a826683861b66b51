"""Adding to a bundle: one writer at a time, the manifest write commits, and the next writer cleans up after a kill."""

import json
import shutil
import subprocess
import sys

import pytest

from gptdeploy.bundle import Artifact, load_bundle
from gptdeploy.bundle_write import install_artifact, rehash_shared_files, staged_folder
from gptdeploy.errors import BundleError

pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")


@pytest.fixture
def bundle(bundle_dir, tmp_path):
    return shutil.copytree(bundle_dir, tmp_path / "bundle")


def test_what_a_killed_writer_left_is_removed_by_the_next_write(bundle):
    """Staging, work and trash folders, temp files, and whichever folder a retire note lists that the manifest
    does not name (the unreferenced one of old and new); the referenced one stays."""
    artifact_folders = sorted(p.name for p in bundle.iterdir() if p.is_dir())
    for leftover in (".stage-0a1b2c3d", ".work-k3j_x9", ".trash-0a1b2c3d"):
        (bundle / leftover).mkdir()
        (bundle / leftover / "model.onnx").write_bytes(b"half")
    (bundle / ".manifest.json.0123456789ab.tmp").write_text("{")
    (bundle / "decoder-fp32.2").mkdir()  # a new version placed, then killed before the manifest named it
    (bundle / ".retire-0a1b2c3d.json").write_text(json.dumps({"folders": ["decoder-fp32.2", "decoder-fp32"]}))
    (bundle / "notes").mkdir()  # not ours: left alone
    rehash_shared_files(bundle)
    assert sorted(p.name for p in bundle.iterdir() if p.is_dir()) == sorted([*artifact_folders, "notes"])
    assert [p.name for p in bundle.glob(".*")] == [".lock"]
    load_bundle(bundle)


def test_a_retire_note_never_removes_what_the_manifest_names_or_anything_outside(bundle, tmp_path):
    (tmp_path / "victim").mkdir()
    folders = ["decoder-fp32", "../victim", str(tmp_path / "victim"), ".", ""]
    (bundle / ".retire-0a1b2c3d.json").write_text(json.dumps({"folders": folders}))
    rehash_shared_files(bundle)
    assert (tmp_path / "victim").is_dir() and not list(bundle.glob(".retire-*"))
    load_bundle(bundle)


def test_a_replacement_gets_a_fresh_folder_and_the_old_one_goes_after_the_commit(bundle):
    with staged_folder(bundle) as staging:
        shutil.copy(bundle / "decoder-fp32" / "model.onnx", staging / "model.onnx")
        shutil.copy(bundle / "decoder-fp32" / "model.onnx.data", staging / "model.onnx.data")
        details = load_bundle(bundle).artifact(name="onnx-fp32").details
        artifact = Artifact("onnx-fp32", "onnx", "fp32", "model.onnx", {}, 18, details)
        with pytest.raises(BundleError, match="already has an artifact 'onnx-fp32'; pass --force"):
            install_artifact(bundle, staging, artifact)
        installed = install_artifact(bundle, staging, artifact, replace_existing=True)
    assert installed.path == "decoder-fp32.2/model.onnx" and not (bundle / "decoder-fp32").exists()
    assert load_bundle(bundle).artifact(name="onnx-fp32").files == installed.files


def test_a_second_writer_of_the_same_bundle_fails_with_a_message_when_it_cannot_wait(bundle, monkeypatch):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from gptdeploy.bundle_write import writing\n"
                               "with writing(sys.argv[1]):\n    print('held', flush=True); time.sleep(30)",
                               str(bundle)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("GPTDEPLOY_LOCK_WAIT", "0.3")
        before = (bundle / "manifest.json").read_bytes()
        with pytest.raises(BundleError, match=f"being written by another gptdeploy process \\(pid {holder.pid}\\)"):
            rehash_shared_files(bundle)
        assert (bundle / "manifest.json").read_bytes() == before
    finally:
        holder.kill()
        holder.wait()
    rehash_shared_files(bundle)  # its lock died with it
