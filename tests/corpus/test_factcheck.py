from collections import Counter

import pytest

from gptdeploy.corpus.entities import ChoiceTracker
from gptdeploy.corpus.factcheck import ATTRIBUTES, HELDOUT_PEOPLE, generate_fact_task
from gptdeploy.corpus.world import build_world, generate_corpus
from gptdeploy.errors import DataError

WORLD = build_world(ChoiceTracker(0))


def person_of(text: str):
    """The person a statement is about, by the longest name it starts with or contains."""
    names = {name: p for p in WORLD.people for name in (p.first, p.full)}
    return names[max((name for name in names if name in text.split("'")[0]), key=len)]


def test_the_task_is_fixed_balanced_and_its_heldout_people_never_in_training():
    train, heldout = generate_fact_task(n_train=400)
    assert (train, heldout) == generate_fact_task(n_train=400)
    assert Counter(e.label for e in train) == {"true": 200, "false": 200}
    assert len(heldout) == HELDOUT_PEOPLE * len(ATTRIBUTES) * 4
    assert Counter(e.label for e in heldout) == {"true": len(heldout) // 2, "false": len(heldout) // 2}
    held_people = {person_of(e.text).first for e in heldout}
    assert len(held_people) == HELDOUT_PEOPLE
    assert not held_people & {person_of(e.text).first for e in train}


def test_labels_are_the_worlds_truth_in_the_corpus_own_words():
    """A statement is true exactly when its value is the person's; each attribute's true form occurs verbatim in
    the pretraining corpus (the knowledge the task needs is there to learn)."""
    train, heldout = generate_fact_task(n_train=300)
    for example in train + heldout:
        person = person_of(example.text)
        truths = {sentence(name, value_of(person)) for value_of, sentence in ATTRIBUTES.values()
                  for name in (person.first, person.full)}  # fmt: skip
        assert (example.text in truths) == (example.label == "true"), example
    corpus = generate_corpus().text
    stated = {attribute for attribute, (value_of, sentence) in ATTRIBUTES.items()
              if any(sentence(p.first, value_of(p)) in corpus for p in WORLD.people)}  # fmt: skip
    assert stated == set(ATTRIBUTES)


def test_bad_sizes_are_refused():
    with pytest.raises(DataError, match="n_train"):
        generate_fact_task(n_train=-1)


def test_false_statements_borrow_values_from_their_own_split():
    """Otherwise the held-out people's values would occur in training only in false statements, and a model would
    learn to call every held-out statement false."""
    train, heldout = generate_fact_task(n_train=400)
    for split in (train, heldout):
        people = {person_of(e.text) for e in split}
        for example in (e for e in split if e.label == "false"):
            person = person_of(example.text)
            owners = {other for value_of, sentence in ATTRIBUTES.values() for other in WORLD.people
                      for name in (person.first, person.full)
                      if sentence(name, value_of(other)) == example.text}  # fmt: skip
            assert owners & people, example
