"""A small, consistent world and an English-like pretraining corpus about it.

The corpus is synthetic so that it ships with the package, is byte-identical on every machine, and comes
with a known information content: every random choice is counted, which gives a floor that trained
models can be compared against.
"""

import gzip
import lzma
import math
import re
from collections import Counter
from dataclasses import dataclass

from gptdeploy.corpus import lexicon as lx
from gptdeploy.corpus.english import nouns
from gptdeploy.corpus.entities import ChoiceTracker, Person, Town, World
from gptdeploy.corpus.narrative import PET_SPECIES, SEASON_OF
from gptdeploy.corpus.stories import GENRES
from gptdeploy.errors import DataError

COUNTABLE = nouns(lx.FRUITS) + nouns(lx.VEGETABLES) + nouns(lx.SMALL_THINGS) + nouns(lx.BAKED)
BUILDINGS, LANDSCAPE = nouns(lx.BUILDINGS), nouns(lx.LANDSCAPE)
N_TOWNS, N_PEOPLE = 12, 40


# ---- the world ----------------------------------------------------------------------------------------


def _build_towns(r: ChoiceTracker, n: int) -> list[Town]:
    columns = zip(
        r.sample(lx.TOWN_NAMES, n),
        r.sample(lx.RIVER_NAMES, n),
        r.sample(range(8, 140), n),
        r.sample(lx.HILL_NAMES, n),
        r.sample(range(120, 950, 10), n),
        r.sample(range(300, 9000, 50), n),
        r.sample(range(64), n),
        r.sample(lx.TOWN_PRODUCTS, n),
        r.sample(lx.FESTIVALS, n),
        strict=True,
    )
    return [
        Town(name, river, miles, hill, metres, r.choice(lx.DAYS[:6]), pop, cell % 8 * 7 + r.below(4),
             cell // 8 * 7 + r.below(4), product, tuple(r.sample(BUILDINGS, 5)),
             tuple(f"{s} {r.choice(lx.STREET_KINDS)}" for s in r.sample(lx.STREET_NAMES, 4)),
             tuple(f"{r.choice(lx.LANDSCAPE_ADJS)} {s}" for s in r.sample(LANDSCAPE, 3)), festival,
             r.choice(lx.MONTHS))
        for name, river, miles, hill, metres, pop, cell, product, festival in columns
    ]  # fmt: skip


def _families(r: ChoiceTracker, n: int) -> tuple[list[str], dict[int, int]]:
    """Surnames for n people in runs of 1-3 siblings, and each sibling's next sibling (by index)."""
    surnames, siblings, start = [], {}, 0
    names = iter(r.sample(lx.SURNAMES, n))
    while start < n:
        size = min(r.choice((1, 2, 3), weights=(2, 3, 1)), n - start)
        surnames += [next(names)] * size
        if size > 1:
            siblings |= {start + k: start + (k + 1) % size for k in range(size)}
        start += size
    return surnames, siblings


def build_world(r: ChoiceTracker) -> World:
    """Draw every fixed fact (homes, jobs, pets, rivers, prices...) once, so all documents agree."""
    towns = _build_towns(r, N_TOWNS)
    named = [(f, True) for f in r.sample(lx.FEMALE_NAMES, N_PEOPLE // 2)]
    named = r.shuffled(named + [(m, False) for m in r.sample(lx.MALE_NAMES, N_PEOPLE // 2)])
    surnames, siblings = _families(r, N_PEOPLE)
    jobs, pet_names = r.sample(lx.JOBS, N_PEOPLE), r.sample(lx.PET_NAMES, N_PEOPLE)
    people = []
    for i, (first, female) in enumerate(named):
        town = towns[i % N_TOWNS] if i < 2 * N_TOWNS else r.choice(towns)  # every town gets two or more
        house = f"{r.choice(('small', 'tall', 'old', 'narrow', 'pretty'))} {r.choice(('stone', 'brick', 'wooden'))}"
        looks = f"{r.choice(lx.HAIR_STYLES)} {r.choice(lx.HAIR_COLOURS)} hair and {r.choice(lx.EYE_COLOURS)} eyes"
        people.append(Person(
            first, surnames[i], female, town, r.choice(town.streets), f"{house} {r.choice(('house', 'cottage'))}",
            jobs[i], r.randint(18, 82), looks, r.choice(PET_SPECIES), pet_names[i], r.choice(lx.PET_ADJS),
            r.choice(lx.DISHES)[0], r.choice(lx.COLOURS), r.choice(lx.HOBBIES),
            named[(i + 1 + r.below(N_PEOPLE - 1)) % N_PEOPLE][0], named[siblings[i]][0] if i in siblings else None,
        ))  # fmt: skip
    prices = {item: r.randint(2, 9) for item in COUNTABLE}
    bloom = {}
    for flower, season in lx.FLOWERS:
        bloom[nouns([flower])[0]] = r.choice([m for m in lx.MONTHS if SEASON_OF[m] == season])
    firsts = [n for n in lx.FEMALE_NAMES + lx.MALE_NAMES if n not in {f for f, _ in named}]
    lasts = [n for n in lx.SURNAMES if n not in surnames]
    strangers = tuple(f"{first} {r.choice(lasts)}" for first in firsts)
    return World(tuple(towns), tuple(people), prices, bloom, strangers)


# ---- the corpus ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Generated text plus the information content of the choices that produced it.

    `bits` sums -log2(p) over every random choice taken, the world's fixed facts included. The text is a
    function of those choices, so `bits_per_char` is an UPPER bound on the corpus's true entropy rate:
    different choice sequences can give the same text, which makes the true rate a little lower. It is
    the floor that training results are compared against: a perfect model could beat it only slightly.
    """

    text: str
    bits: float

    @property
    def bits_per_char(self) -> float:
        return self.bits / len(self.text)

    @property
    def documents(self) -> list[str]:
        """The paragraphs, in order: pretraining holds out the last ones for validation."""
        return self.text.split("\n\n")


def generate_corpus(seed: int = 0, target_bytes: int = 2_200_000) -> Corpus:
    """Documents (short paragraphs separated by a blank line) until the text reaches `target_bytes`."""
    if target_bytes <= 0:
        raise DataError(f"target_bytes must be positive, got {target_bytes}")
    r = ChoiceTracker(seed)
    world = build_world(r)
    genres, weights = zip(*GENRES, strict=True)
    documents, size = [], -2
    while size < target_bytes:
        document = r.choice(genres, weights)(world, r)
        documents.append(document)
        size += len(document.encode()) + 2
    return Corpus("\n\n".join(documents), r.bits)


def corpus_stats(corpus: Corpus) -> dict[str, float | int]:
    """Size, vocabulary and entropy figures, to compare trained models against.

    The unigram rate is what a model that knows only character frequencies achieves, gzip and xz what
    general compressors achieve; `bits_per_char` is the generator's own upper bound on the true rate.
    """
    text = corpus.text
    data = text.encode()
    counts, n = Counter(text), len(text)
    unigram = -sum(c / n * math.log2(c / n) for c in counts.values())
    return {
        "bytes": len(data),
        "chars": n,
        "documents": text.count("\n\n") + 1,
        "word_types": len(set(re.findall(r"[a-z]+", text.lower()))),
        "bits_per_char": round(corpus.bits_per_char, 6),
        "unigram_bits_per_char": round(unigram, 6),
        "gzip_bits_per_char": round(8 * len(gzip.compress(data, compresslevel=9, mtime=0)) / n, 6),
        "xz_bits_per_char": round(8 * len(lzma.compress(data, preset=9)) / n, 6),
    }
