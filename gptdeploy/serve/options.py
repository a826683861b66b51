"""What a served model is made of, as plain data: the CLI builds it, a Ray replica receives it (it pickles), and
`service()` turns it into a `Service`. Importing this module needs none of the optional extras."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass

from gptdeploy.engine import DEFAULT_PREFILL_CHUNK
from gptdeploy.errors import ServerError
from gptdeploy.runtimes.base import DEFAULT_SLOTS


@dataclass(frozen=True)
class ServeOptions:
    model: str  # checkpoint or bundle folder
    backend: str = "auto"
    device: str | None = None
    precision: str = "fp32"
    artifact: str | None = None
    max_slots: int = DEFAULT_SLOTS
    max_queue: int = 256  # requests waiting for a slot before 429
    api_key: str | None = None
    model_name: str = "gptdeploy"  # the id clients send as `model`
    prefill_chunk: int = DEFAULT_PREFILL_CHUNK  # prompt tokens per engine step (latency against prefill speed)

    def service(self):
        """A `Service` that loads this model when started."""
        from gptdeploy.runtimes.base import load_runtime
        from gptdeploy.serve.service import Service

        loader = functools.partial(load_runtime, self.model, self.backend, self.device, self.precision,
                                   self.max_slots, self.artifact)  # fmt: skip
        return Service(loader, self.model_name, self.max_queue, self.prefill_chunk)


def require_extra(module: str, extra: str) -> None:
    """Refuse with the install command when an optional dependency is missing."""
    if importlib.util.find_spec(module) is None:
        raise ServerError(f"serving needs {module}, which is not installed: pip install 'gptdeploy[{extra}]'")
