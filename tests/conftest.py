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


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory, encoder_dir):
    """The tiny encoder with a two-label head (random weights); never modify it."""
    import torch

    from gptdeploy.checkpoint import load_checkpoint
    from gptdeploy.model import GPT

    base = load_checkpoint(encoder_dir)
    torch.manual_seed(3)
    model = GPT(base.config.__class__(**{**base.config.to_dict(), "num_labels": 2}))
    model.load_state_dict(base.model.state_dict(), strict=False)
    path = tmp_path_factory.mktemp("tiny-classifier")
    save_checkpoint(path, model, base.tokenizer, {"stage": "finetune", "objective": "mlm", "labels": ["no", "yes"]})
    return path
