"""The op counts every stage records in the manifest and `gptdeploy inspect` shows, counted one way for all."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


def count_ops(nodes: Iterable[Any]) -> dict[str, int]:
    """Nodes per op type, most frequent first; ops outside the standard domain as "domain::Op".

    Takes onnx NodeProtos or onnx_ir nodes alike (both have `domain` and `op_type`).
    """
    counts = Counter(f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
                     for node in nodes)  # fmt: skip
    return dict(counts.most_common())
