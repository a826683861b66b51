"""Memory a request needs, compared with what there is, before anything is allocated.

A config with 100,000 layers or a 1e11-token vocabulary must be refused in milliseconds with a message, not after
seconds of allocating and a crash of the allocator. The limit is the memory available now (Linux: MemAvailable), or
GPTDEPLOY_MEMORY_LIMIT (bytes, or a number with K/M/G/T) where set.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from gptdeploy.errors import ConfigError, GptDeployError

MEMORY_LIMIT = "GPTDEPLOY_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_limit() -> int | None:
    """Bytes a request may use: GPTDEPLOY_MEMORY_LIMIT, else the memory available now; None where unknown."""
    setting = os.environ.get(MEMORY_LIMIT)
    if setting:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", setting, re.IGNORECASE)
        if not match:
            raise ConfigError(f"{MEMORY_LIMIT}={setting!r} is not a size; use bytes or e.g. 16G")
        return int(float(match[1]) * _UNITS[match[2].upper()])
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read_text(), re.MULTILINE)
        if found:
            return int(found[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def require_memory(needed: int, what: str, fix: str, error: type[GptDeployError] = ConfigError) -> None:
    """Raise `error` if `what` needs more than the limit (see `memory_limit`)."""
    limit = memory_limit()
    if limit is not None and needed > limit:
        raise error(f"{what} needs about {describe_bytes(needed)} of memory, more than the {describe_bytes(limit)} "
                    f"available; {fix} (or raise the limit with {MEMORY_LIMIT})")  # fmt: skip


def describe_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} PB"


def require_model_memory(config, batch_size: int | None = None) -> None:
    """Refuse a model config (a `GPTConfig`) whose weights, or whose training at `batch_size`, cannot fit."""
    shape = (f"model config n_layer={config.n_layer}, n_embd={config.n_embd}, vocab_size={config.vocab_size}, "
             f"block_size={config.block_size} ({config.num_parameters:.3g} parameters)")  # fmt: skip
    if batch_size is None:
        require_memory(4 * config.num_parameters, f"a {shape}", "choose a smaller config")
    else:
        require_memory(config.training_bytes(batch_size), f"training a {shape} at batch size {batch_size}",
                       "choose a smaller config or batch size")  # fmt: skip
