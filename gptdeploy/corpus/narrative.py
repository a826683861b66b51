"""What every genre of the corpus builds on: word pools, small pickers and the voice a story is told in.

Facts, stories, dialogues and sums all draw on these. They live here, below all the genre modules, so
that each genre imports them from one place and none has to import another genre just for a helper.
"""

from __future__ import annotations

from gptdeploy.corpus import lexicon as lx
from gptdeploy.corpus.english import a, nouns, plural
from gptdeploy.corpus.entities import ChoiceTracker, Person, World

# ---- word pools (nouns() also records irregular plurals for plural()) -----------------------------------

THINGS = nouns(lx.HOUSEHOLD) + nouns(lx.TOOLS) + nouns(lx.CLOTHES) + nouns(lx.WOMENS_CLOTHES) + nouns(lx.TOYS)
FRUITS, PET_SPECIES = nouns(lx.FRUITS), nouns(lx.PET_SPECIES)
PICKED = FRUITS + nouns(lx.VEGETABLES)
ANIMALS = tuple((nouns([name])[0], *rest) for name, *rest in lx.ANIMALS)
FLOWERS = nouns([flower for flower, _ in lx.FLOWERS])
SEASON_OF = dict(zip(lx.MONTHS, lx.MONTH_SEASONS, strict=True))
CLOTHES, BAKED = nouns(lx.CLOTHES), nouns(lx.BAKED)
LOSABLE, WOMENS_CLOTHES = nouns(lx.LOSABLE), nouns(lx.WOMENS_CLOTHES)
THING_ADJS = lx.COLOURS + lx.QUALITIES + lx.SIZES + lx.MATERIALS
FARM_ANIMALS = ("hens", "ducks", "geese", "pigs", "goats", "cows", "sheep", "horses", "donkeys")
THING_VERBS = ("clean", "polish", "mend", "paint", "wrap", "carry", "move", "lift", "pack", "fetch", "hide", "check",
               "fix", "measure", "store", "weigh")  # fmt: skip
CLOTH_VERBS = ("fold", "hang", "wash", "dry", "patch", "mend", "brush")
FOOD_VERBS = ("slice", "peel", "chop", "wash", "pick", "taste", "share", "boil", "fry", "roast", "stew", "serve", "eat",
              "cook", "weigh", "sell", "buy", "count")  # fmt: skip


# ---- small pickers -------------------------------------------------------------------------------------


def other(w: World, r: ChoiceTracker, p: Person) -> Person:
    """Anyone but p."""
    i = next(k for k, q in enumerate(w.people) if q is p)
    return w.people[(i + 1 + r.below(len(w.people) - 1)) % len(w.people)]


def month(r: ChoiceTracker) -> tuple[str, str]:
    chosen = r.choice(lx.MONTHS)
    return chosen, SEASON_OF[chosen]


def count(r: ChoiceTracker, noun: str) -> str:
    """'a pear' or 'seven pears'."""
    n = r.randint(1, 20)
    return a(noun) if n == 1 else f"{lx.NUMBER_WORDS[n]} {plural(noun)}"


# ---- the voice a story is told in, and what it can do --------------------------------------------------


class Voice:
    """Who a story is about: named the first time, then mostly by pronoun, or "I" in diaries and letters."""

    def __init__(self, person: Person, me: bool = False) -> None:
        self.p, self.me, self._named = person, me, False
        self.pron, self.poss = ("I", "my") if me else (person.he, person.his)

    def who(self, r: ChoiceTracker) -> str:
        if self.me:
            return "I"
        if not self._named or r.chance(0.25):
            self._named = True
            return self.p.first
        return self.p.he


def activity(w: World, r: ChoiceTracker, v: Voice) -> str:
    """Something to do, as a base-form verb phrase ('peel some carrots')."""
    return r.choice((
        lambda: f"{r.choice(THING_VERBS)} the {r.choice(THING_ADJS)} {r.choice(THINGS)}",
        lambda: f"{r.choice(CLOTH_VERBS)} {v.poss} {r.choice(lx.COLOURS)} "
        f"{r.choice(CLOTHES + WOMENS_CLOTHES if v.p.female else CLOTHES)}",
        lambda: f"{r.choice(FOOD_VERBS)} some {plural(r.choice(PICKED))}",
        lambda: f"{r.choice(lx.MOVES)} {r.choice(lx.OUTDOORS)}",
        lambda: f"play {r.choice(lx.GAMES)} with {other(w, r, v.p).first}",
        lambda: f"{r.choice(('sweep', 'tidy', 'scrub', 'paint', 'clean'))} the {r.choice(lx.ROOMS)}",
        lambda: f"bake {a(r.choice(BAKED))}",
        lambda: f"pick some {r.choice(lx.HERBS)} for the soup",
        lambda: f"water the {plural(r.choice(FLOWERS))}",
        lambda: f"{r.choice(('write a poem', 'sing a song', 'read a book'))} about {r.choice(lx.TOPICS)}",
        lambda: f"sort the {plural(r.choice(w.items))}",
        lambda: f"climb {v.p.town.hill} Hill",
        lambda: f"feed the {r.choice(FARM_ANIMALS)}",
        lambda: r.choice(lx.ACTIVITIES),
        lambda: r.choice(lx.ACTIVITIES),
    ))()  # fmt: skip
