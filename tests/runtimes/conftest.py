"""The runtime parametrization: every contract test runs on every backend listed here that can run here.

Adding a backend means adding one entry to RUNTIMES.
"""

from __future__ import annotations

import importlib.util

import pytest

from gptdeploy.checkpoint import save_checkpoint
from gptdeploy.runtimes.base import load_runtime
from tests.helpers import tiny_model

# backend -> (module it needs, how to open the tiny test model with it)
RUNTIMES = {
    "torch": ("torch", lambda checkpoint: load_runtime(checkpoint, backend="torch", max_batch_size=8)),
}


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("tiny-checkpoint")
    save_checkpoint(path, tiny_model(seed=1), tokenizer, {"stage": "pretrain"})
    return path


@pytest.fixture(params=sorted(RUNTIMES))
def runtime(request, checkpoint_dir):
    module, open_runtime = RUNTIMES[request.param]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"optional dependency {module} is not installed")
    with open_runtime(checkpoint_dir) as opened:
        yield opened
