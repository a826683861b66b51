import re
from collections import Counter

import pytest

from gptdeploy.corpus.genres import GENRES, LABELS, generate_genre_task
from gptdeploy.corpus.world import generate_corpus
from gptdeploy.errors import DataError


def test_the_task_is_fixed_balanced_and_its_heldout_set_never_in_training():
    train, heldout = generate_genre_task(n_train=600, n_heldout_per_label=20)
    assert (train, heldout) == generate_genre_task(n_train=600, n_heldout_per_label=20)
    assert Counter(e.label for e in heldout) == dict.fromkeys(LABELS, 20)
    assert Counter(e.label for e in train) == dict.fromkeys(LABELS, 100)
    assert not {e.text for e in train} & {e.text for e in heldout}
    assert len({e.text for e in heldout}) == len(heldout)


def test_every_sentence_is_one_its_genre_writes_in_the_corpus_world():
    """Checkable labels: each text is a sentence of a paragraph made by its label's generator, and about the
    people and towns of the pretraining corpus."""
    train, _ = generate_genre_task(n_train=60, n_heldout_per_label=0)
    corpus = generate_corpus(target_bytes=300_000).text
    names = set(re.findall(r"\b[A-Z][a-z]+\b", corpus))
    for example in train:
        assert example.label in GENRES and example.text.endswith((".", "?", "!", '"'))
        later_words = example.text.split(" ", 1)[-1]  # the first word is capitalised as a sentence opener
        assert set(re.findall(r"\b[A-Z][a-z]+\b", later_words)) <= names | {"I"}, example


def test_bad_sizes_are_refused():
    with pytest.raises(DataError, match="n_heldout_per_label"):
        generate_genre_task(n_heldout_per_label=10_000)
