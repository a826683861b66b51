"""What the corpus generators share: seeded choices that count their information, and the world's people and
towns.

Kept apart from `world.py` (which builds the world and the corpus from the generators) so every generator module
imports these types for real, and no module of the package imports another that imports it back.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class ChoiceTracker:
    """Seeded randomness that adds up the information (-log2 p) of every choice it makes.

    Only `Random.random()` and `Random.randrange()` are used: their outputs for a seed are stable across
    Python versions, so the corpus is too.
    """

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self.bits = 0.0

    def below(self, n: int) -> int:
        """A uniform integer in [0, n)."""
        if n > 1:
            self.bits += math.log2(n)
        return self._rng.randrange(n)

    def randint(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)

    def choice(self, options: Sequence[T], weights: Sequence[float] | None = None) -> T:
        if weights is None:
            return options[self.below(len(options))]
        cumulative = list(itertools.accumulate(weights))
        index = min(bisect.bisect_right(cumulative, self._rng.random() * cumulative[-1]), len(options) - 1)
        self.bits -= math.log2(weights[index] / cumulative[-1])
        return options[index]

    def chance(self, p: float) -> bool:
        hit = self._rng.random() < p
        self.bits -= math.log2(p if hit else 1 - p)
        return hit

    def sample(self, options: Sequence[T], k: int) -> list[T]:
        """k distinct options in the order drawn (the order is part of the information)."""
        pool = list(options)
        return [pool.pop(self.below(len(pool))) for _ in range(k)]

    def shuffled(self, options: Sequence[T]) -> list[T]:
        return self.sample(options, len(options))


@dataclass(frozen=True, eq=False)
class Town:
    name: str
    river: str
    river_miles: int
    hill: str
    hill_metres: int
    market_day: str
    population: int
    x: int
    y: int
    product: str
    buildings: tuple[str, ...]
    streets: tuple[str, ...]
    sights: tuple[str, ...]  # "deep pond" style features nearby
    festival: str
    festival_month: str


@dataclass(frozen=True, eq=False)
class Person:
    first: str
    last: str
    female: bool
    town: Town
    street: str
    house: str
    job: tuple[str, ...]  # (job, where it is done, what it does)
    age: int
    looks: str
    pet: str
    pet_name: str
    pet_adj: str
    food: str
    colour: str
    hobby: str
    friend: str
    sibling: str | None

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def he(self) -> str:
        return "she" if self.female else "he"

    @property
    def his(self) -> str:
        return "her" if self.female else "his"


@dataclass(frozen=True)
class World:
    towns: tuple[Town, ...]
    people: tuple[Person, ...]
    prices: dict[str, int]  # pennies for one of each countable item
    bloom: dict[str, str]  # the month each flower comes out
    strangers: tuple[str, ...]  # full names no resident has, for travellers and children

    @property
    def items(self) -> tuple[str, ...]:
        return tuple(self.prices)

    def person(self, first: str) -> Person:
        return next(p for p in self.people if p.first == first)

    def miles(self, one: Town, other: Town) -> int:
        return max(1, round(math.hypot(one.x - other.x, one.y - other.y)))

    def neighbours(self, town: Town) -> list[Town]:
        return sorted((t for t in self.towns if t is not town), key=lambda t: (self.miles(town, t), t.name))

    def residents(self, town: Town) -> list[Person]:
        return [p for p in self.people if p.town is town]
