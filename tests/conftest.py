"""Shared fixtures."""

from __future__ import annotations

import pytest

from gptdeploy.checkpoint import save_checkpoint
from gptdeploy.tokenizer import Tokenizer
from tests.helpers import SAMPLE_TEXT, tiny_model


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(SAMPLE_TEXT * 20, vocab_size=320)


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory, tokenizer):
    """A tiny checkpoint; never modify it (copy it first)."""
    path = tmp_path_factory.mktemp("tiny-checkpoint")
    save_checkpoint(path, tiny_model(seed=1), tokenizer, {"stage": "pretrain"})
    return path


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, checkpoint_dir):
    """The tiny checkpoint exported to a bundle with its slot graph (onnx-fused-ort); never modify it (copy it
    first)."""
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs the optional onnxscript package")
    from gptdeploy.export.fusion import optimize_bundle
    from gptdeploy.export.pipeline import export_bundle

    path = tmp_path_factory.mktemp("tiny-bundle") / "bundle"
    export_bundle(checkpoint_dir, path, tasks=False)
    optimize_bundle(path, "onnxruntime")
    return path


@pytest.fixture(scope="session")
def mask_tokenizer() -> Tokenizer:
    return Tokenizer.train(SAMPLE_TEXT * 20, vocab_size=320, mask=True)


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory, mask_tokenizer):
    """A tiny MLM encoder checkpoint (random weights, a tokenizer with <|mask|>); never modify it."""
    path = tmp_path_factory.mktemp("tiny-encoder")
    save_checkpoint(path, tiny_model(seed=2, causal=False), mask_tokenizer, {"stage": "pretrain", "objective": "mlm"})
    return path
