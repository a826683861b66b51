"""Narrative genres for the synthetic corpus: day stories, routines, diaries, letters, trips and fables.

The world's fixed facts appear in them only as the world has them (a character's job, pet, market day,
the distance between two towns), and every number is computed. The sums and dialogues they sit beside
live in gptdeploy.corpus.sums and gptdeploy.corpus.dialogues; GENRES at the end weighs every genre, those of
gptdeploy.corpus.facts included, for world.generate_corpus.
"""

from __future__ import annotations

from collections.abc import Callable

from gptdeploy.corpus import lexicon as lx
from gptdeploy.corpus.dialogues import g_dialogue
from gptdeploy.corpus.english import a, cap, ing, listing, nouns, past, plural, third
from gptdeploy.corpus.entities import ChoiceTracker, World
from gptdeploy.corpus.facts import (
    g_calendar,
    g_compare,
    g_family,
    g_nature,
    g_person,
    g_quiz,
    g_recipe,
    g_town,
    g_weather,
)
from gptdeploy.corpus.narrative import (
    ANIMALS,
    BAKED,
    CLOTHES,
    FLOWERS,
    FRUITS,
    LOSABLE,
    THING_ADJS,
    THING_VERBS,
    THINGS,
    WOMENS_CLOTHES,
    Voice,
    activity,
    count,
    month,
    other,
)
from gptdeploy.corpus.sums import SUMS, g_sums, m_price

TALES = nouns(lx.TALES)
VISITOR_JOBS = lx.STRANGER_JOBS + tuple(job for job, *_ in lx.JOBS)
CONNECTORS = ("Then", "After that,", "Later,", "Next,", "Soon", "Before long,", "In the afternoon,", "At noon,")
WALKERS = ("dog", "pony", "goat", "donkey", "pig")


def _when(r: ChoiceTracker, m: str, season: str) -> str:
    return r.choice((
        lambda: f"On {r.choice(lx.DAYS)}",
        lambda: f"One {r.choice(('morning', 'afternoon', 'evening'))} in {m}",
        lambda: f"Early one {r.choice(lx.DAYS)} in {m}",
        lambda: f"In {m}",
        lambda: f"One {r.choice(('morning', 'afternoon', 'evening'))} last {season}",
        lambda: f"At {r.choice(lx.NUMBER_WORDS[6:12])} o'clock one {r.choice(lx.DAYS)}",
    ))()  # fmt: skip


# ---- events (past-tense clauses about the voice's person) ----------------------------------------------


def e_go(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    return r.choice((
        lambda: f"{v.who(r)} {r.choice(('walked', 'went', 'hurried', 'ran'))} to the "
        f"{r.choice(v.p.town.buildings)} in {v.p.town.name}",
        lambda: f"{v.who(r)} {past(r.choice(lx.MOVES))} {r.choice(lx.OUTDOORS)}",
    ))()  # fmt: skip


def e_work(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    _, where, act = v.p.job
    return f"{v.who(r)} {past(act)} {where} {r.choice(('all morning', 'until noon', 'for a few hours', 'all day'))}"


def e_do(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    return r.choice((
        lambda: f"{v.who(r)} {past(activity(w, r, v))}",
        lambda: f"when {other(w, r, v.p).first} came by, {v.who(r)} was {ing(activity(w, r, v))}",
        lambda: f"{v.who(r)} spent the morning {ing(activity(w, r, v))}",
    ))()  # fmt: skip


def e_object(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    thing = f"{r.choice(THING_ADJS)} {r.choice(THINGS)}"
    return r.choice((
        lambda: f"{v.who(r)} borrowed {a(thing)} from {other(w, r, v.p).first}",
        lambda: f"{v.who(r)} found {a(thing)} {r.choice(lx.PLACES)}",
        lambda: f"{v.who(r)} bought {a(thing)} from a stall in the market",
        lambda: f"{v.who(r)} lent {v.poss} {thing} to {other(w, r, v.p).first}",
    ))()  # fmt: skip


def e_tidy(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    found = [count(r, f"{r.choice(THING_ADJS)} {r.choice(THINGS)}") for _ in range(r.randint(2, 3))]
    return f"when {v.who(r)} tidied the {r.choice(lx.ROOMS)}, {v.pron} found {listing(found)}"


def e_buy(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    goods = [count(r, item) for item in r.sample(w.items, r.randint(1, 3))]
    return f"{v.who(r)} bought {listing([*goods, 'some ' + r.choice(lx.MASS_FOODS)])} at the market"


def e_eat(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    dish, meal = r.choice(lx.DISHES)[0], r.choice(lx.MEALS)
    return r.choice((
        lambda: f"for {meal} {v.who(r)} had {dish}",
        lambda: f"{v.who(r)} made {dish} for {other(w, r, v.p).first}",
        lambda: f"{v.who(r)} ate some {r.choice(lx.FOOD_ADJS)} {dish} for {meal}",
    ))()  # fmt: skip


def e_meet(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    q = other(w, r, v.p)
    return r.choice((
        lambda: f"{v.who(r)} met {q.first}, who was {ing(q.job[2])} {q.job[1]}",
        lambda: f"{v.who(r)} met {q.first} and {q.his} {q.pet} {q.pet_name}",
        lambda: f"{v.who(r)} and {q.first} talked about {r.choice(lx.TALK)}",
        lambda: f"{v.who(r)} met {a(r.choice(VISITOR_JOBS))} called {r.choice(w.strangers)}, who had come all "
        f"the way from {r.choice(lx.FAR_PLACES)}",
        lambda: f"{v.who(r)} listened to {q.first} playing the {r.choice(lx.INSTRUMENTS)}",
        lambda: f"{v.who(r)} told {q.first} {a(r.choice(TALES))} about {r.choice(lx.TOPICS)}",
        lambda: f"{v.who(r)} played {r.choice(lx.GAMES)} with {q.first} and {r.choice(('won', 'lost'))}",
    ))()  # fmt: skip


def e_animal(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    kind, colour, home, _, _, habit = r.choice(ANIMALS)
    return r.choice((
        lambda: f"{v.who(r)} saw {a(kind)} {home}",
        lambda: f"{v.who(r)} watched {a(colour)} {kind} {ing(habit)} {home}",
        lambda: f"{v.who(r)} drew a picture of {a(kind)}",
    ))()  # fmt: skip


def e_weather(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    first, second = r.sample(lx.WEATHER[season], 2)
    wardrobe = CLOTHES + WOMENS_CLOTHES if v.p.female else CLOTHES
    wear = r.choice((lambda: r.choice(wardrobe), lambda: r.choice(lx.PAIRED_CLOTHES)))()
    return f"it was {first} and {second}, so {v.who(r)} wore {v.poss} {r.choice(lx.COLOURS)} {wear}"


def e_pet(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    p = v.p
    if p.pet in WALKERS and r.chance(0.5):
        return f"{v.who(r)} took {p.pet_name} for a walk along the river {p.town.river}"
    return f"{v.who(r)} {r.choice(('fed', 'brushed', 'played with'))} {v.poss} {p.pet} {p.pet_name}"


def e_hobby(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    return f"{v.who(r)} {past(v.p.hobby)} {r.choice(('for an hour', 'for a while', 'until dark', 'after tea'))}"


def e_help(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    q = other(w, r, v.p)
    return f"{v.who(r)} helped {q.first} to {r.choice(THING_VERBS)} {q.his} {r.choice(THING_ADJS)} {r.choice(THINGS)}"


def e_feel(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    return r.choice((
        lambda: f"{v.who(r)} felt {r.choice(lx.MOODS)}",
        lambda: f"{v.who(r)} was {' and a little '.join(r.sample(lx.MOODS, 2))}",
        lambda: f"{v.who(r)} hurt {v.poss} {r.choice(lx.BODY_PARTS)} and had to rest",
    ))()  # fmt: skip


def e_garden(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    return r.choice((
        lambda: f"{v.who(r)} planted {plural(r.choice(FLOWERS))} in {v.poss} garden",
        lambda: f"{v.who(r)} picked some {plural(r.choice(FRUITS))} in the orchard",
        lambda: f"{v.who(r)} gave {other(w, r, v.p).first} a bunch of {plural(r.choice(FLOWERS))}",
    ))()  # fmt: skip


def e_sum(w: World, r: ChoiceTracker, v: Voice, season: str) -> str:
    return r.choice(SUMS)(w, r, v)


EVENTS = (e_go, e_work, e_do, e_do, e_object, e_tidy, e_buy, e_eat, e_meet, e_animal, e_pet, e_hobby, e_help, e_feel,
          e_garden, e_sum)  # fmt: skip


def _events(w: World, r: ChoiceTracker, v: Voice, season: str, k: int, after: Callable | None = None) -> list[str]:
    """k event sentences, none of the kind `after` (the one just told), some led by a connector."""
    sentences = []
    for event in r.sample([e for e in EVENTS if e is not after], k):
        lead = r.choice(CONNECTORS) + " " if r.chance(0.4) else ""
        sentences.append(cap(lead + event(w, r, v, season)) + ".")
    return sentences


def _ending(r: ChoiceTracker, v: Voice) -> str:
    return r.choice((
        lambda: f"It had been {a(r.choice(lx.ENDINGS))} day.",
        lambda: f"That night {v.who(r)} slept well.",
        lambda: f"In the evening {v.who(r)} went home to {v.p.street}.",
        lambda: cap(f"{v.who(r)} was tired but {r.choice(lx.MOODS)}."),
        lambda: f"At sunset {v.who(r)} walked home, {listing(r.sample(lx.MOODS, 2))}.",
        lambda: f"By the end of the day {v.who(r)} was very {r.choice(lx.MOODS)}.",
    ))()  # fmt: skip


# ---- genres --------------------------------------------------------------------------------------------


def g_day(w: World, r: ChoiceTracker) -> str:
    v, (m, season) = Voice(r.choice(w.people)), month(r)
    opening = r.choice((e_weather, e_go, e_work, e_pet, e_buy))
    first = f"{_when(r, m, season)}, {opening(w, r, v, season)}."
    rest = _events(w, r, v, season, r.randint(2, 4), after=opening)
    return " ".join([first, *rest, _ending(r, v)])


def g_routine(w: World, r: ChoiceTracker) -> str:
    p = r.choice(w.people)
    v = Voice(p)
    _, where, act = p.job
    steps = [
        f"Every morning {p.first} {third(activity(w, r, v))}.",
        f"Then {p.he} {third(act)} {where} until {r.choice(lx.NUMBER_WORDS[1:7])} o'clock.",
        *(f"On {day}s {p.he} {third(activity(w, r, v))}." for day in r.sample(lx.DAYS, r.randint(1, 3))),
        f"In the evening {p.he} likes to {r.choice((lambda: p.hobby, lambda: activity(w, r, v)))()}.",
    ]
    return " ".join(steps)


def g_diary(w: World, r: ChoiceTracker) -> str:
    p, (m, season) = r.choice(w.people), month(r)
    v = Voice(p, me=True)
    date = f"{r.choice(lx.DAYS)}, the {lx.ORDINALS[r.below(lx.MONTH_DAYS[lx.MONTHS.index(m)])]} of {m}"
    plan = r.choice((
        lambda: f"Tomorrow I will {activity(w, r, v)}.",
        lambda: f"Tomorrow I must {p.job[2]} again.",
        lambda: f"On {p.town.market_day} I will go to the market in {p.town.name}.",
        lambda: f"In {p.town.festival_month} I will go to the {p.town.festival} in {p.town.name}.",
    ))()  # fmt: skip
    first = r.choice(EVENTS)
    today = f"Today {first(w, r, v, season)}."
    rest = _events(w, r, v, season, r.randint(1, 3), after=first)
    return " ".join([f"From the diary of {p.full}. {date}.", today, *rest, plan])


def g_letter(w: World, r: ChoiceTracker) -> str:
    p, (_, season) = r.choice(w.people), month(r)
    q = w.person(p.sibling) if p.sibling and r.chance(0.5) else w.person(p.friend)
    v = Voice(p, me=True)
    pool = (
        lambda: f"Here in {p.town.name} it has been {listing(r.sample(lx.WEATHER[season], 2))} all week.",
        lambda: f"{p.pet_name} is well and as {p.pet_adj} as ever.",
        lambda: f"This week I {past(p.job[2])} every day.",
        lambda: f"Will you come to the {p.town.festival} in {p.town.festival_month}?",
        lambda: cap(r.choice(EVENTS)(w, r, v, season)) + ".",
        lambda: f"Next week I hope to {activity(w, r, v)}.",
        lambda: (
            f"Next month I will come to {q.town.name} to see you. It is only {w.miles(p.town, q.town)} miles."
            if q.town is not p.town
            else f"I will come round to {q.street} on {r.choice(lx.DAYS)}."
        ),
        lambda: (
            f"Please give my love to {q.sibling}."
            if q.sibling and q.sibling != p.first
            else f"Please give {q.pet_name} a pat from me."
        ),
    )
    body = [f() for f in r.sample(pool, r.randint(2, 4))]
    rel = ("sister" if p.female else "brother") if q.first == p.sibling else "friend"
    greeting = r.choice(("I hope you are well.", "Thank you for your letter.", "It was good to hear from you."))
    sign = r.choice((f"Your {rel},", "With love,", "Best wishes,"))
    return " ".join([f"Dear {q.first},", greeting, *body, f"{sign} {p.first}"])


def g_market(w: World, r: ChoiceTracker) -> str:
    v, (_, season) = Voice(r.choice(w.people)), month(r)
    t = v.p.town
    trip = f"On {t.market_day}, {v.who(r)} went to the market in {t.name}."
    stall = (
        f"There was a stall run by {a(r.choice(VISITOR_JOBS))} called {r.choice(w.strangers)}, "
        f"who sold {plural(r.choice(THINGS))} and {plural(r.choice(THINGS))}."
    )
    buys = [cap(m_price(w, r, v)) + "." for _ in range(r.randint(1, 2))]
    return " ".join([trip, *([stall] if r.chance(0.5) else []), *buys, *_events(w, r, v, season, 1), _ending(r, v)])


def g_lost(w: World, r: ChoiceTracker) -> str:
    p, (m, season) = r.choice(w.people), month(r)
    q, (here, there, found) = other(w, r, p), r.sample(lx.PLACES, 3)
    finder = r.choice((f"Then {q.first} found it {found}.", f"At last {p.he} found it {found}."))
    thanks = r.choice((
        lambda: f"{p.first} was so {r.choice(('glad', 'relieved', 'pleased'))} that {p.he} gave {q.first} "
        f"{count(r, r.choice(FRUITS + BAKED))}.",
        lambda: f"{p.first} put it away {r.choice(lx.ADVERBS)}.",
    ))()  # fmt: skip
    return " ".join([
        f"{_when(r, m, season)}, {p.first} lost {p.his} {r.choice(lx.COLOURS)} {r.choice(LOSABLE)}.",
        f"{cap(p.he)} looked {here} and {there}, but it was not there.",
        finder,
        thanks,
    ])  # fmt: skip


def g_travel(w: World, r: ChoiceTracker) -> str:
    p, (m, season) = r.choice(w.people), month(r)
    home, there = p.town, r.choice([t for t in w.towns if t is not p.town])
    d, q = w.miles(home, there), r.choice(w.residents(there))
    speeds = [s for s in (2, 3, 4, 5) if d % s == 0 and d // s > 1]
    road = f"The road is {d} miles long, so {p.he} set off early."
    if speeds:
        speed = r.choice(speeds)
        road = f"It is {d} miles, and {p.he} walked {speed} miles each hour, so the journey took {d // speed} hours."
    sight = r.choice((
        lambda: f"crossed the river {there.river}",
        lambda: f"passed {there.hill} Hill",
        lambda: f"saw {a(r.choice(ANIMALS)[0])}",
        lambda: f"stopped by {a(r.choice(there.sights))}",
    ))()  # fmt: skip
    back = r.choice(("The next day {} walked home again.", "{} stayed the night and went home in the morning."))
    return " ".join([
        f"{_when(r, m, season)}, {p.first} travelled from {home.name} to {there.name}.",
        road,
        f"On the way {p.he} {sight}.",
        f"In {there.name} {p.he} visited {q.first}, who was {ing(q.job[2])} {q.job[1]}.",
        cap(back.format(p.he)),
    ])  # fmt: skip


def g_school(w: World, r: ChoiceTracker) -> str:
    t, (child, pal) = r.choice(w.towns), r.sample(w.strangers, 2)
    first_subject, second_subject = r.sample(lx.SUBJECTS, 2)
    prize = r.choice((
        lambda: f"{child} won a prize for {second_subject}.",
        lambda: f"{child} told the class {a(r.choice(TALES))} about {r.choice(lx.TOPICS)}.",
        lambda: f"{child} and {pal.split()[0]} drew a map of {t.name} with the river {t.river} on it.",
    ))()  # fmt: skip
    return " ".join([
        f"On {r.choice(lx.DAYS[:5])} the children at the school in {t.name} had a lesson in {first_subject}.",
        f"After that they learned about {r.choice(lx.TOPICS)}.",
        f"At break they played {r.choice(lx.GAMES)} in the yard.",
        prize,
        f"After school {child.split()[0]} walked home {r.choice(lx.OUTDOORS)} with {pal}.",
    ])  # fmt: skip


def g_fable(w: World, r: ChoiceTracker) -> str:
    (one, _, home, food, _, habit), (two, _, home2, food2, *_) = r.sample(ANIMALS, 2)
    ending = r.choice((
        lambda: f"So the {one} showed the {two} the way, and the {two} thanked it.",
        lambda: f"From that day on, the {one} and the {two} were friends.",
        lambda: f"But the {one} was {r.choice(lx.PET_ADJS)} and would not help, so the {two} went on alone.",
    ))()  # fmt: skip
    return " ".join([
        f"Once upon a time there was {a(r.choice(lx.PET_ADJS))} {one} that lived {home}.",
        f"Every day it {past(habit)} {home} and looked for {food}.",
        f"One {r.choice(lx.SEASONS)} morning the {one} met {a(two)}, which lived {home2}.",
        f'"{r.choice(lx.GREETINGS)}," said the {one}. "Where are you going?"',
        f'"I am looking for {food2}," said the {two}.',
        ending,
    ])  # fmt: skip


Genre = Callable[["World", "ChoiceTracker"], str]

GENRES: tuple[tuple[Genre, float], ...] = (
    (g_person, 3), (g_family, 2), (g_town, 2.5), (g_compare, 1.5), (g_quiz, 2), (g_nature, 2), (g_calendar, 1),
    (g_recipe, 1), (g_weather, 1.5), (g_sums, 2.5), (g_day, 4), (g_routine, 2), (g_diary, 2), (g_letter, 2),
    (g_dialogue, 3), (g_market, 2), (g_lost, 1.5), (g_travel, 1.5), (g_school, 1.5), (g_fable, 1),
)  # fmt: skip
