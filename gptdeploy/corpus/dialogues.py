"""Dialogues: two people greet each other and trade a question and its answer or two.

Most exchanges answer from the world's facts (where someone lives, their job, their pet, the market day,
the distance between two towns), so the corpus says them in speech as well as in statements.
"""

from __future__ import annotations

from gptdeploy.corpus import lexicon as lx
from gptdeploy.corpus.english import a, cap, number_words, plural
from gptdeploy.corpus.entities import ChoiceTracker, Person, World
from gptdeploy.corpus.narrative import LOSABLE, PET_SPECIES, Voice, activity, other


def _tag(r: ChoiceTracker, who: str) -> str:
    verb = r.choice(("said", "replied", "answered", "explained", "laughed", "added", "whispered"))
    return r.choice((lambda: f"{verb} {who}", lambda: f"{who} {verb} {r.choice(lx.ADVERBS)}"))()


def x_home(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    return r.choice((
        lambda: f'"Do you still live in {q.town.name}, {q.first}?" asked {p.first}. '
        f'"Yes, I still live on {q.street}," {_tag(r, q.first)}.',
        lambda: f'"Do you live in {r.choice([t for t in w.towns if t is not q.town]).name}, {q.first}?" asked '
        f'{p.first}. "No, I live in {q.town.name}," {_tag(r, q.first)}.',
    ))()  # fmt: skip


def x_job(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    job, where, act = q.job
    question = f'"What do you do all day, {q.first}?" asked {p.first}.'
    return f'{question} "I am {a(job)}, so I {act} {where}," {_tag(r, q.first)}.'


def x_pet(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    return r.choice((
        lambda: f'"How is {q.pet_name}?" asked {p.first}. '
        f'"{q.pet_name} is as {q.pet_adj} as ever," {_tag(r, q.first)}.',
        lambda: f'"Is {q.pet_name} {a(r.choice([s for s in PET_SPECIES if s != q.pet]))}?" asked {p.first}. '
        f'"No, {q.pet_name} is {a(q.pet)}," {_tag(r, q.first)}.',
    ))()  # fmt: skip


def x_market(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    return f'"When is the market in {q.town.name}?" asked {p.first}. "Every {q.town.market_day}," {_tag(r, q.first)}.'


def x_distance(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    t = r.choice([t for t in w.towns if t is not q.town])
    return (
        f'"How far is it from {q.town.name} to {t.name}?" asked {p.first}. '
        f'"It is {number_words(w.miles(q.town, t))} miles," {_tag(r, q.first)}.'
    )


def x_food(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    return f'"What do you like to eat best, {q.first}?" asked {p.first}. "{cap(q.food)}," {_tag(r, q.first)}.'


def x_plan(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    v = Voice(q, me=True)
    return f'"What will you do tomorrow?" asked {p.first}. "I will {activity(w, r, v)}," {_tag(r, q.first)}.'


def x_offer(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    answer = r.choice(("Yes, please", "No, thank you", "Just a little, please"))
    question = f'"Would you like some {r.choice(lx.MASS_FOODS)}, {q.first}?" asked {p.first}.'
    return f'{question} "{answer}," {_tag(r, q.first)}.'


def x_count(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    n, item, third_person = r.randint(4, 30), plural(r.choice(w.items)), other(w, r, q)
    k = r.randint(1, n - 1)
    return (
        f'"How many {item} do you have?" asked {p.first}. '
        f'"I had {n}, but I gave {k} to {third_person.first}, so I have {n - k} now," {_tag(r, q.first)}.'
    )


def x_weather(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    now, later = r.sample(lx.WEATHER[r.choice(lx.SEASONS)], 2)
    return f'"Isn\'t it {now} today?" said {p.first}. "Yes, and tomorrow it will be {later}," {_tag(r, q.first)}.'


def x_lost(w: World, r: ChoiceTracker, p: Person, q: Person) -> str:
    thing = f"{r.choice(lx.COLOURS)} {r.choice(LOSABLE)}"
    return r.choice((
        lambda: f'"Is this your {thing}, {q.first}?" asked {p.first}. "Yes, it is mine," {_tag(r, q.first)}.',
        lambda: f'"Is this your {thing}, {q.first}?" asked {p.first}. "No, it is not mine. Perhaps it is '
        f'{other(w, r, q).first}\'s," {_tag(r, q.first)}.',
    ))()  # fmt: skip


EXCHANGES = (x_lost, x_home, x_job, x_pet, x_market, x_distance, x_food, x_plan, x_offer, x_count, x_weather)


def g_dialogue(w: World, r: ChoiceTracker) -> str:
    p = r.choice(w.people)
    q = w.person(p.friend) if r.chance(0.5) else other(w, r, p)
    hello, reply = r.sample(lx.GREETINGS, 2)
    opening = r.choice((
        lambda: f'"{hello}, {q.first}," said {p.first}. "{reply}, {p.first}," '
        f'{r.choice(("said", "replied", "called"))} {q.first}.',
        lambda: f"{p.full} met {q.full} by the {r.choice(p.town.buildings)} in {p.town.name}.",
    ))()  # fmt: skip
    middle = [x(w, r, p, q) for x in r.sample(EXCHANGES, r.randint(1, 2))]
    bye = f'"Goodbye, {q.first}," said {p.first}. "See you on {r.choice(lx.DAYS)}," called {q.first}.'
    return " ".join([opening, *middle, *([bye] if len(middle) == 1 and r.chance(0.6) else [])])
