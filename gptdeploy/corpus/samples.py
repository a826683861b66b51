"""Write the shipped data: the pretraining corpus, the fine-tuning splits and the corpus statistics.

Every file is byte-reproducible (gzip with a fixed name and mtime, JSON with fixed key order), so the
copies in the repository's samples/ can be checked against the generators, and every file is written
atomically, so an interrupted run never leaves half a file.
"""

import gzip
import io
import json
from collections.abc import Sequence
from pathlib import Path

from gptdeploy.corpus.factcheck import generate_fact_task
from gptdeploy.corpus.genres import LabeledText, generate_genre_task
from gptdeploy.corpus.tasks import Example, generate_tasks
from gptdeploy.corpus.world import corpus_stats, generate_corpus
from gptdeploy.fileio import atomic_write, atomic_write_json, atomic_write_text


def _gzip(text: str) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="corpus.txt", mode="wb", compresslevel=9, fileobj=buffer, mtime=0) as archive:
        archive.write(text.encode("utf-8"))
    return buffer.getvalue()


def _jsonl(examples: Sequence[Example | LabeledText]) -> str:
    lines = (json.dumps(example.to_json(), ensure_ascii=False, separators=(",", ":")) for example in examples)
    return "".join(line + "\n" for line in lines)


def write_samples(out_dir: Path, seed: int = 0) -> dict[str, Path]:
    """Generate everything for `seed` into out_dir; returns {"corpus", "train", "heldout", "classify_train",
    "classify_heldout", "facts_train", "facts_heldout", "stats"} -> path."""
    out_dir = Path(out_dir)
    corpus = generate_corpus(seed)
    train, heldout = generate_tasks(seed)
    genre_train, genre_heldout = generate_genre_task(seed)
    fact_train, fact_heldout = generate_fact_task(seed)
    packed = _gzip(corpus.text)
    return {
        "corpus": atomic_write(out_dir / "corpus.txt.gz", lambda tmp: tmp.write_bytes(packed)),
        "train": atomic_write_text(out_dir / "finetune" / "train.jsonl", _jsonl(train)),
        "heldout": atomic_write_text(out_dir / "finetune" / "heldout.jsonl", _jsonl(heldout)),
        "classify_train": atomic_write_text(out_dir / "classify" / "train.jsonl", _jsonl(genre_train)),
        "classify_heldout": atomic_write_text(out_dir / "classify" / "heldout.jsonl", _jsonl(genre_heldout)),
        "facts_train": atomic_write_text(out_dir / "factcheck" / "train.jsonl", _jsonl(fact_train)),
        "facts_heldout": atomic_write_text(out_dir / "factcheck" / "heldout.jsonl", _jsonl(fact_heldout)),
        "stats": atomic_write_json(out_dir / "corpus_stats.json", {"seed": seed, **corpus_stats(corpus)}),
    }
