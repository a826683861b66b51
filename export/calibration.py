"""Calibration data for static int8 quantization: training documents, fed as the decoder graph's inputs.

Static (QDQ) quantization fixes every activation's int8 range ahead of time, from the ranges seen while running
the fp32 graph on representative text. The caller passes the documents (the CLI and the demo: the shipped corpus);
they are drawn from the part pretraining trains on, never from the held-out documents the golden references and
validation use, so parity is measured on text calibration has not seen.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from gptdeploy.config import GPTConfig
from gptdeploy.graph_contract import ATTENTION_MASK, INPUT_IDS, POSITION_IDS, past_names
from gptdeploy.tokenizer import Tokenizer

logger = logging.getLogger(__name__)

# Documents drawn from the first 90% of the corpus: well inside what pretraining trains on (it holds out the last
# 5%), and far from the last documents the golden references open with.
TRAIN_SHARE = 0.9


def sample_training_documents(documents: Sequence[str], samples: int, seed: int = 0) -> list[str]:
    """`samples` distinct documents from the training part of `documents`, the same ones for a seed everywhere."""
    pool = list(documents[: int(len(documents) * TRAIN_SHARE)])
    return random.Random(seed).sample(pool, min(samples, len(pool)))


class CorpusCalibrationReader(CalibrationDataReader):
    """ONNX Runtime's calibration data reader: one document per run, as the full graph input set.

    Each feed is a prefill of one row: the document's tokens (bos first, at most `max_tokens`), a full attention
    mask, positions 0..T-1 and an empty past (past length 0) for every layer, in the graph's cache dtype.
    """

    def __init__(
        self,
        config: GPTConfig,
        tokenizer: Tokenizer,
        texts: Sequence[str],
        max_tokens: int,
        cache_dtype: type = np.float32,
        progress: bool = True,
    ):
        self.config, self.cache_dtype = config, cache_dtype
        limit = min(max_tokens, config.block_size)
        self.sequences = [tokenizer.encode(text, bos=True)[:limit] for text in texts]
        self.progress = progress
        self._feeds: Iterator[dict[str, np.ndarray]] | None = None
        logger.info("calibrating activation ranges on %d documents", len(self.sequences))

    def __len__(self) -> int:
        return len(self.sequences)

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:
        c = self.config
        empty = np.zeros((1, c.kv_heads, 0, c.head_dim), dtype=self.cache_dtype)  # (B, H_kv, past=0, Dh)
        for tokens in tqdm(self.sequences, desc="calibration", disable=not self.progress):
            ids = np.array([tokens], dtype=np.int64)  # (1, T)
            feed = {
                INPUT_IDS: ids,
                ATTENTION_MASK: np.ones_like(ids),
                POSITION_IDS: np.arange(ids.shape[1], dtype=np.int64)[None],
            }
            feed.update({name: empty for name in past_names(c.n_layer)})
            yield feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next feed, or None at the end (ONNX Runtime's CalibrationDataReader protocol)."""
        if self._feeds is None:
            self._feeds = self.feeds()
        return next(self._feeds, None)
