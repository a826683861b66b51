"""The shipped samples/ are exactly what the generators make."""

import gzip
import hashlib
import json
from pathlib import Path

from gptdeploy.corpus.samples import write_samples
from gptdeploy.corpus.world import generate_corpus

SHIPPED = Path(__file__).parents[2] / "samples"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shipped_samples_are_byte_identical_to_a_fresh_run(tmp_path):
    written = write_samples(tmp_path)
    assert set(written) == {
        "corpus",
        "train",
        "heldout",
        "classify_train",
        "classify_heldout",
        "facts_train",
        "facts_heldout",
        "stats",
    }
    for path in written.values():
        shipped = SHIPPED / path.relative_to(tmp_path)
        assert _sha256(path) == _sha256(shipped), f"{shipped} is stale: regenerate it with write_samples"


def test_shipped_corpus_and_stats_describe_the_seed_0_corpus():
    text = gzip.decompress((SHIPPED / "corpus.txt.gz").read_bytes()).decode("utf-8")
    corpus = generate_corpus(0)
    assert text == corpus.text
    stats = json.loads((SHIPPED / "corpus_stats.json").read_text(encoding="utf-8"))
    assert stats["chars"] == len(text) and stats["seed"] == 0
    assert stats["bits_per_char"] == round(corpus.bits_per_char, 6)
