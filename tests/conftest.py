"""Shared fixtures."""

from __future__ import annotations

import pytest

from gptdeploy.tokenizer import Tokenizer
from tests.helpers import SAMPLE_TEXT


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(SAMPLE_TEXT * 20, vocab_size=320)
