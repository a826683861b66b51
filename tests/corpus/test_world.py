"""The synthetic corpus: reproducible, big and varied enough, and consistent with the world it describes."""

import re
from collections import Counter, defaultdict

import pytest

from gptdeploy.corpus.english import a, counted, ing, number_words, past, plural, third
from gptdeploy.corpus.world import ChoiceTracker, build_world, corpus_stats, generate_corpus
from gptdeploy.errors import DataError


@pytest.fixture(scope="module")
def corpus():
    return generate_corpus()


@pytest.fixture(scope="module")
def text(corpus):
    return corpus.text


@pytest.fixture(scope="module")
def world():
    return build_world(ChoiceTracker(0))  # generate_corpus draws the world first from the same seed


@pytest.fixture(scope="module")
def sentences(text):
    return [s for doc in text.split("\n\n") for s in re.split(r'(?<=[.!?])"?\s+', doc) if s]


def test_same_seed_same_text_and_bits_different_seed_different_text():
    first, again = generate_corpus(seed=5, target_bytes=50_000), generate_corpus(seed=5, target_bytes=50_000)
    assert first.text == again.text and first.bits == again.bits
    assert generate_corpus(seed=6, target_bytes=50_000).text != first.text


def test_target_size_and_document_layout(text):
    assert len(text.encode()) >= 2_000_000
    documents = text.split("\n\n")
    assert all(doc and "\n" not in doc and doc == doc.strip() for doc in documents)
    per_document = [len(re.split(r'(?<=[.!?])"?\s+', doc)) for doc in documents]
    assert sum(2 <= n <= 8 for n in per_document) / len(documents) > 0.98


def test_small_target_and_bad_target():
    assert 1_000 <= len(generate_corpus(target_bytes=1_000).text) < 3_000
    with pytest.raises(DataError):
        generate_corpus(target_bytes=0)


def test_vocabulary_is_broad(corpus):
    assert corpus_stats(corpus)["word_types"] >= 2_500


def test_bits_per_char_is_a_positive_bound_below_gzip(corpus):
    stats = corpus_stats(corpus)
    assert stats["bits_per_char"] == pytest.approx(corpus.bits_per_char, abs=1e-6)
    assert 0 < stats["bits_per_char"] < stats["xz_bits_per_char"] < stats["gzip_bits_per_char"]
    assert stats["gzip_bits_per_char"] < stats["unigram_bits_per_char"]


def test_everyone_always_lives_in_the_same_town(text, world):
    homes = defaultdict(set)
    for first, town in re.findall(r"\b([A-Z][a-z]+)(?: [A-Z][a-z]+)? lives in ([A-Z][a-z]+)", text):
        homes[first].add(town)
    for person in world.people:
        assert homes[person.first] == {person.town.name}, person.first


def test_ages_pets_and_jobs_are_stated_consistently(text, world):
    people = {p.first: p for p in world.people}
    for first, age in re.findall(r"\b([A-Z][a-z]+)(?: [A-Z][a-z]+)? is (\d+) years old\b", text):
        assert int(age) == people[first].age
    for first, species, name in re.findall(r"\b([A-Z][a-z]+)(?: [A-Z][a-z]+)? has an? (\w+) called ([A-Z]\w+)", text):
        if species not in ("brother", "sister"):
            assert (species, name) == (people[first].pet, people[first].pet_name)
    for job, town, full in re.findall(
        r"Who is the ([a-z ]+) in ([A-Z][a-z]+)\? It is ([A-Z][a-z]+ [A-Z][a-z]+)\.", text
    ):
        holder = people[full.split()[0]]
        assert (holder.job[0], holder.town.name, holder.full) == (job, town, full)


def test_distances_and_prices_never_change(text):
    miles = defaultdict(set)
    for d, one, other in re.findall(r"It is (\d+) miles from ([A-Z][a-z]+) to ([A-Z][a-z]+)\.", text):
        miles[frozenset((one, other))].add(d)
    for one, other, d in re.findall(r"([A-Z][a-z]+) and ([A-Z][a-z]+) are (\d+) miles apart", text):
        miles[frozenset((one, other))].add(d)
    assert len(miles) > 30 and all(len(seen) == 1 for seen in miles.values())
    prices = defaultdict(set)
    for item, pennies in re.findall(r"one (\w+) costs (\d+) pennies", text):
        prices[item].add(pennies)
    assert len(prices) > 30 and all(len(seen) == 1 for seen in prices.values())


SUMS = {
    r"had (\d+) \w+ and gave (\d+) to \w+, so (?:she|he|I) had (\d+) left": lambda x, y, z: x - y == z,
    r"had (\d+) \w+ and bought (\d+) more, so now (?:she|he|I) had (\d+)": lambda x, y, z: x + y == z,
    r"picked (\d+) \w+ and \w+ picked (\d+), so together they picked (\d+)": lambda x, y, z: x + y == z,
    r"put (\d+) \w+ in each of (\d+) \w+, so there were (\d+)": lambda x, y, z: x * y == z,
    r"shared (\d+) \w+ equally among (\d+) friends, so each friend got (\d+)": lambda x, y, z: x == y * z,
    r"bought (\d+) \w+ at (\d+) pennies each, so (?:she|he|I) paid (\d+) pennies": lambda x, y, z: x * y == z,
    r"for (\d+) pennies, handed over (\d+) pennies and got (\d+) back": lambda x, y, z: y - x == z,
    r"I had (\d+), but I gave (\d+) to \w+, so I have (\d+) now": lambda x, y, z: x - y == z,
    r"It is (\d+) miles, and (?:she|he) walked (\d+) miles each hour, so the journey took (\d+) hours": (
        lambda x, y, z: x == y * z
    ),
}


@pytest.mark.parametrize("pattern", SUMS)
def test_arithmetic_is_right(text, pattern):
    found = [tuple(map(int, groups)) for groups in re.findall(pattern, text)]
    assert len(found) > 50
    assert all(SUMS[pattern](*numbers) for numbers in found)


def test_age_gaps_are_right(text, world):
    ages = {p.first: p.age for p in world.people}
    gaps = re.findall(r"\b([A-Z][a-z]+) is (\d+) years? (older|younger) than ([A-Z][a-z]+)\.", text)
    assert len(gaps) > 50
    for first, gap, direction, second in gaps:
        assert (ages[first] - ages[second]) * (1 if direction == "older" else -1) == int(gap)


def test_no_template_dominates(sentences):
    prefixes = Counter(" ".join(s.split()[:3]) for s in sentences)
    assert prefixes.most_common(1)[0][1] < 0.05 * len(sentences)
    assert len(prefixes) > 5_000


def test_choice_tracker_counts_bits():
    r = ChoiceTracker(1)
    r.choice(range(8))
    assert r.bits == pytest.approx(3)
    picked = r.choice("ab", weights=(3, 1))
    assert r.bits == pytest.approx(3 + (0.415037 if picked == "a" else 2), abs=1e-6)
    before = r.bits
    assert sorted(r.sample(range(4), 4)) == [0, 1, 2, 3]
    assert r.bits - before == pytest.approx(4.584963, abs=1e-6)  # log2(4!)


def test_english_forms():
    assert [plural(n) for n in ("knife", "box", "berry", "day", "sheep", "potato", "rusty pocket knife")] == [
        "knives", "boxes", "berries", "days", "sheep", "potatoes", "rusty pocket knives",
    ]  # fmt: skip
    assert [third(v) for v in ("catch", "carry", "play", "fix bread", "coo")] == [
        "catches", "carries", "plays", "fixes bread", "coos",
    ]  # fmt: skip
    assert [past(v) for v in ("run", "bake bread", "shoe horses")] == ["ran", "baked bread", "shod horses"]
    assert [ing(v) for v in ("run", "bake", "chop", "agree", "dye", "travel")] == [
        "running", "baking", "chopping", "agreeing", "dyeing", "travelling",
    ]  # fmt: skip
    assert [a("apple"), a("pear"), a("umbrella"), a("uniform")] == ["an apple", "a pear", "an umbrella", "a uniform"]
    assert (counted(1, "mile"), counted(3, "mile"), number_words(42), number_words(7)) == (
        "1 mile", "3 miles", "forty-two", "seven",
    )  # fmt: skip
