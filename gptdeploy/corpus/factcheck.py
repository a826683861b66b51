"""A classification task only pretraining can solve: is this statement about a person of the corpus's world true?

Each statement is one of the corpus's own fixed fact forms ("Mia lives in Riverton.", "Mia's favourite colour is
blue."), with either the person's real value or another person's value for the same attribute. The held-out set is
about people who never occur in the training set, so the labels of training statements say nothing about them: a
model fine-tuned from random weights can only guess (50%), and whatever it scores above that it learned from the
pretraining corpus, which states every person's facts. A false statement takes the value of another person of the
same split, so within a split a value is about as common in false statements as in true ones (drawn from everyone,
the held-out people's values would occur in training only in false statements, and a model would learn to call
them false).
"""

from __future__ import annotations

from collections.abc import Callable

from gptdeploy.corpus.english import a
from gptdeploy.corpus.entities import ChoiceTracker, Person
from gptdeploy.corpus.genres import LabeledText
from gptdeploy.corpus.world import build_world
from gptdeploy.errors import DataError

FACT_TASK = "shipped facts"  # how a checkpoint records that it was tuned on these
HELDOUT_PEOPLE = 12  # of the world's 40
# attribute -> (its value for a person, the sentence stating it, in the corpus's own wording)
ATTRIBUTES: dict[str, tuple[Callable[[Person], str], Callable[[str, str], str]]] = {
    "home": (lambda p: p.town.name, lambda n, v: f"{n} lives in {v}."),
    "job": (lambda p: p.job[0], lambda n, v: f"{n} is {a(v)}."),
    "age": (lambda p: str(p.age), lambda n, v: f"{n} is {v} years old."),
    "food": (lambda p: p.food, lambda n, v: f"{n}'s favourite food is {v}."),
    "colour": (lambda p: p.colour, lambda n, v: f"The colour {n} likes best is {v}."),
    "hobby": (lambda p: p.hobby, lambda n, v: f"{n} loves to {v}."),
}


def _statement(
    person: Person, name: str, attribute: str, people: list[Person], truth: bool, r: ChoiceTracker
) -> LabeledText:
    value_of, sentence = ATTRIBUTES[attribute]
    value = value_of(person)
    if not truth:
        value = r.choice([value_of(other) for other in people if value_of(other) != value])
    return LabeledText(sentence(name, value), "true" if truth else "false")


def generate_fact_task(seed: int = 0, n_train: int = 3000) -> tuple[list[LabeledText], list[LabeledText]]:
    """(train, held-out) statements labelled true or false; the held-out people never occur in training. The
    held-out set states each attribute of each held-out person once truly and once falsely, by first and by full
    name; training statements are drawn at random, half of them true."""
    if n_train < 0:
        raise DataError(f"need n_train >= 0, got {n_train}")
    world = build_world(ChoiceTracker(0))  # the pretraining corpus's people
    r = ChoiceTracker(2_000_003 + seed)
    people = list(world.people)
    order = r.shuffled(range(len(people)))
    held_people = [people[i] for i in order[:HELDOUT_PEOPLE]]
    train_people = [people[i] for i in order[HELDOUT_PEOPLE:]]
    heldout = [
        _statement(person, name, attribute, held_people, truth, r)
        for person in held_people
        for attribute in ATTRIBUTES
        for truth in (True, False)
        for name in (person.first, person.full)
    ]
    train = []
    for index in range(n_train):
        person = r.choice(train_people)
        name = person.full if r.chance(0.25) else person.first
        train.append(_statement(person, name, r.choice(list(ATTRIBUTES)), train_people, index % 2 == 0, r))
    return train, heldout
