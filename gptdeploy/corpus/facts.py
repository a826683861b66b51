"""Present-tense statements of the world's fixed facts, and the genres made only of them.

Facts are only ever stated as the world has them (homes, jobs, pets, distances, ages, blooming months),
so a model can learn the world. Checkable facts keep fixed forms ("X lives in Y.", "It is 12 miles from
X to Y.") that the tests parse.
"""

from __future__ import annotations

from gptdeploy.corpus import lexicon as lx
from gptdeploy.corpus.english import a, cap, counted, listing, number_words, plural, third
from gptdeploy.corpus.entities import ChoiceTracker, Person, Town, World
from gptdeploy.corpus.narrative import ANIMALS, FLOWERS, PICKED, SEASON_OF, month


def name(r: ChoiceTracker, p: Person) -> str:
    return p.full if r.chance(0.25) else p.first


# ---- a person ------------------------------------------------------------------------------------------


def f_home(w: World, r: ChoiceTracker, p: Person) -> str:
    n, t = name(r, p), p.town
    return r.choice((
        f"{n} lives in {t.name}.",
        f"{n} lives in {t.name}, on {p.street}.",
        f"{n} lives in {t.name}, in {a(p.house)} on {p.street}.",
        f"{n} lives in {t.name}, a town on the river {t.river}.",
    ))  # fmt: skip


def f_job(w: World, r: ChoiceTracker, p: Person) -> str:
    n, (job, where, act) = name(r, p), p.job
    return r.choice((
        f"{n} is {a(job)}.",
        f"{n} works as {a(job)} in {p.town.name}.",
        f"Every day {n} {third(act)} {where}.",
        f"{n} is the {job} of {p.town.name}, and {p.he} {third(act)}.",
        f"As {a(job)}, {n} {third(act)} {where}.",
    ))  # fmt: skip


def f_age(w: World, r: ChoiceTracker, p: Person) -> str:
    n = name(r, p)
    return r.choice((
        f"{n} is {p.age} years old.",
        f"{n} is {number_words(p.age)} years old.",
        f"{n} is {p.age}.",
        f"{n} will be {p.age + 1} on {p.his} next birthday.",
    ))  # fmt: skip


def f_looks(w: World, r: ChoiceTracker, p: Person) -> str:
    n = name(r, p)
    return r.choice((f"{n} has {p.looks}.", f"You can always tell {n} by {p.his} {p.looks}."))


def f_pet(w: World, r: ChoiceTracker, p: Person) -> str:
    n = name(r, p)
    return r.choice((
        f"{n} has {a(p.pet)} called {p.pet_name}.",
        f"{n}'s {p.pet} is called {p.pet_name}, and it is very {p.pet_adj}.",
        f"{p.pet_name} is {n}'s {p.pet_adj} {p.pet}.",
        f"{n} keeps {a(p.pet_adj)} {p.pet} named {p.pet_name}.",
    ))  # fmt: skip


def f_likes(w: World, r: ChoiceTracker, p: Person) -> str:
    n = name(r, p)
    return r.choice((
        f"{n}'s favourite food is {p.food}.",
        f"{n} likes {p.food} more than anything.",
        f"{n}'s favourite colour is {p.colour}.",
        f"The colour {n} likes best is {p.colour}.",
    ))  # fmt: skip


def f_hobby(w: World, r: ChoiceTracker, p: Person) -> str:
    n = name(r, p)
    return r.choice((
        f"In {p.his} free time {n} likes to {p.hobby}.",
        f"{n} loves to {p.hobby}.",
        f"On Sundays {n} {third(p.hobby)}.",
        f"When {p.he} is not working, {n} {third(p.hobby)}.",
    ))  # fmt: skip


def f_family(w: World, r: ChoiceTracker, p: Person) -> str:
    n = name(r, p)
    if p.sibling is None:
        return r.choice((f"{n} has no brothers or sisters.", f"{n} is an only child."))
    s = w.person(p.sibling)
    rel = "sister" if s.female else "brother"
    pair = {(True, True): "sisters", (False, False): "brothers"}.get((p.female, s.female), "brother and sister")
    return r.choice((
        f"{n} has {a(rel)} called {s.first}.",
        f"{n}'s {rel} {s.first} lives in {s.town.name}.",
        f"{n} and {s.first} are {pair}.",
        f"{n}'s {rel}, {s.full}, is {a(s.job[0])}.",
    ))  # fmt: skip


def f_friend(w: World, r: ChoiceTracker, p: Person) -> str:
    n, f = name(r, p), w.person(p.friend)
    also = "also " if f.town is p.town else ""
    return r.choice((
        f"{n}'s best friend is {f.full}.",
        f"{n}'s best friend is {f.first}, who {also}lives in {f.town.name}.",
        f"{n} often visits {p.his} friend {f.first} in {f.town.name}.",
    ))  # fmt: skip


def f_market(w: World, r: ChoiceTracker, p: Person) -> str:
    n, t = name(r, p), p.town
    return r.choice((
        lambda: f"Every {t.market_day}, {n} goes to the market in {t.name}.",
        lambda: f"On {t.market_day}s {n} buys {plural(r.choice(w.items))} at the market in {t.name}.",
    ))()  # fmt: skip


PERSON_FACTS = (f_job, f_age, f_looks, f_pet, f_likes, f_hobby, f_family, f_friend, f_market)


# ---- a town --------------------------------------------------------------------------------------------


def t_river(w: World, r: ChoiceTracker, t: Town) -> str:
    return r.choice((
        f"{t.name} lies on the river {t.river}.",
        f"The river {t.river} flows through {t.name}.",
        f"{t.name} is a town on the river {t.river}, which is {t.river_miles} miles long.",
    ))  # fmt: skip


def t_hill(w: World, r: ChoiceTracker, t: Town) -> str:
    return r.choice((
        f"{t.hill} Hill rises above {t.name}.",
        f"Above {t.name} stands {t.hill} Hill, which is {t.hill_metres} metres high.",
        f"From the top of {t.hill} Hill you can see the whole of {t.name}.",
    ))  # fmt: skip


def t_market(w: World, r: ChoiceTracker, t: Town) -> str:
    return r.choice((
        lambda: f"The market in {t.name} is held every {t.market_day}.",
        lambda: f"On {t.market_day}s there is a market in {t.name}.",
        lambda: f"Every {t.market_day} farmers bring {plural(r.choice(PICKED))} and "
        f"{r.choice(lx.MASS_FOODS)} to the market in {t.name}.",
    ))()  # fmt: skip


def t_product(w: World, r: ChoiceTracker, t: Town) -> str:
    return r.choice((
        f"{t.name} is famous for its {t.product}.",
        f"People come from far away to buy the {t.product} of {t.name}.",
    ))  # fmt: skip


def t_size(w: World, r: ChoiceTracker, t: Town) -> str:
    return r.choice((f"About {t.population} people live in {t.name}.", f"{t.name} has about {t.population} people."))


def t_buildings(w: World, r: ChoiceTracker, t: Town) -> str:
    found = listing([a(b) for b in r.sample(t.buildings, r.randint(2, 4))])
    return r.choice((f"In {t.name} there is {found}.", f"{t.name} has {found}."))


def t_sights(w: World, r: ChoiceTracker, t: Town) -> str:
    sight = r.choice(t.sights)
    return r.choice((
        f"Near {t.name} there is {a(sight)}.",
        f"Just outside {t.name} lies {a(sight)}.",
        f"People from {t.name} like to walk to the {sight} on Sundays.",
    ))  # fmt: skip


def t_festival(w: World, r: ChoiceTracker, t: Town) -> str:
    return r.choice((
        f"Every {t.festival_month} {t.name} holds its {t.festival}.",
        f"The {t.festival} in {t.name} is held in {t.festival_month}.",
        f"People come from all the nearby towns to the {t.festival} in {t.name} every {t.festival_month}.",
    ))  # fmt: skip


def t_neighbour(w: World, r: ChoiceTracker, t: Town) -> str:
    near = w.neighbours(t)[0]
    return r.choice((
        lambda: f"The nearest town to {t.name} is {near.name}, {w.miles(t, near)} miles away.",
        lambda: f"From {t.name} it is {w.miles(t, near)} miles to {near.name}, the nearest town.",
        lambda: c_distance(w, r, t),
    ))()  # fmt: skip


def t_people(w: World, r: ChoiceTracker, t: Town) -> str:
    folk = w.residents(t)
    return r.choice((
        lambda: f"{listing([p.first for p in r.shuffled(folk)])} all live in {t.name}.",
        lambda: (lambda p: f"The {p.job[0]} in {t.name} is {p.full}.")(r.choice(folk)),
        lambda: f"The main streets of {t.name} are {listing(t.streets)}.",
    ))()  # fmt: skip


TOWN_FACTS = (t_hill, t_market, t_product, t_size, t_buildings, t_sights, t_festival, t_neighbour, t_people)


# ---- comparisons (every number computed from the world) ------------------------------------------------


def c_distance(w: World, r: ChoiceTracker, t: Town | None = None) -> str:
    one, far = (t, r.choice([u for u in w.towns if u is not t])) if t else r.sample(w.towns, 2)
    d = w.miles(one, far)
    return r.choice((
        f"It is {d} miles from {one.name} to {far.name}.",
        f"{one.name} and {far.name} are {d} miles apart.",
        f"{far.name} is {d} miles from {one.name}.",
    ))  # fmt: skip


def c_river(w: World, r: ChoiceTracker) -> str:
    long, short = sorted(r.sample(w.towns, 2), key=lambda t: -t.river_miles)
    return r.choice((
        f"The river {long.river} is longer than the river {short.river}.",
        f"The river {short.river} is shorter than the river {long.river}.",
        f"The river {long.river} is {counted(long.river_miles - short.river_miles, 'mile')} longer than the river "
        f"{short.river}.",
        f"The river {short.river}, which flows through {short.name}, is {short.river_miles} miles long.",
    ))  # fmt: skip


def c_hill(w: World, r: ChoiceTracker) -> str:
    high, low = sorted(r.sample(w.towns, 2), key=lambda t: -t.hill_metres)
    return r.choice((
        f"{high.hill} Hill is higher than {low.hill} Hill.",
        f"{low.hill} Hill is lower than {high.hill} Hill, near {high.name}.",
        f"{high.hill} Hill is {high.hill_metres - low.hill_metres} metres higher than {low.hill} Hill.",
        f"{low.hill} Hill, near {low.name}, is {low.hill_metres} metres high.",
    ))  # fmt: skip


def c_town(w: World, r: ChoiceTracker) -> str:
    big, small = sorted(r.sample(w.towns, 2), key=lambda t: -t.population)
    return r.choice((
        f"{big.name} is bigger than {small.name}.",
        f"More people live in {big.name} than in {small.name}.",
        f"{small.name} is smaller than {big.name}.",
    ))  # fmt: skip


def c_age(w: World, r: ChoiceTracker, pair: tuple[Person, Person] | None = None) -> str:
    old, young = sorted(pair or r.sample(w.people, 2), key=lambda p: -p.age)
    if old.age == young.age:
        return f"{old.first} and {young.first} are the same age."
    gap = old.age - young.age
    return r.choice((
        f"{old.first} is older than {young.first}.",
        f"{young.first} is {counted(gap, 'year')} younger than {old.first}.",
        f"{old.first} is {number_words(gap)} {'year' if gap == 1 else 'years'} older than {young.first}.",
        f"{old.first} is {counted(gap, 'year')} older than {young.first}.",
        f"In {counted(gap, 'year')} {young.first} will be as old as {old.first} is now.",
    ))  # fmt: skip


def c_most(w: World, r: ChoiceTracker) -> str:
    longest = max(w.towns, key=lambda t: t.river_miles)
    highest = max(w.towns, key=lambda t: t.hill_metres)
    return r.choice((
        lambda: f"The longest river is the {longest.river}, which flows through {longest.name}.",
        lambda: f"The highest hill of all is {highest.hill} Hill, near {highest.name}.",
        lambda: f"The biggest town is {max(w.towns, key=lambda t: t.population).name}.",
        lambda: f"The smallest town is {min(w.towns, key=lambda t: t.population).name}.",
        lambda: (lambda t: f"The oldest person in {t.name} is {max(w.residents(t), key=lambda p: p.age).full}.")(
            r.choice(w.towns)),
    ))()  # fmt: skip


# ---- genres made of facts ------------------------------------------------------------------------------


def g_person(w: World, r: ChoiceTracker) -> str:
    p = r.choice(w.people)
    facts = r.sample(PERSON_FACTS, r.randint(2, 5))
    facts.insert(r.below(len(facts) + 1), f_home)
    return " ".join(f(w, r, p) for f in facts)


def g_family(w: World, r: ChoiceTracker) -> str:
    p = r.choice(w.people)
    q = w.person(p.sibling or p.friend)
    facts = [f(w, r, q) for f in r.sample((f_home, f_job, f_age, f_looks, f_pet, f_hobby), r.randint(2, 3))]
    return " ".join([f_family(w, r, p), f_friend(w, r, p), *facts, c_age(w, r, (p, q))])


def g_town(w: World, r: ChoiceTracker) -> str:
    t = r.choice(w.towns)
    return " ".join(f(w, r, t) for f in [t_river, *r.sample(TOWN_FACTS, r.randint(2, 5))])


def g_compare(w: World, r: ChoiceTracker) -> str:
    facts = (c_river, c_hill, c_town, c_age, c_most, c_distance)
    return " ".join(r.choice(facts)(w, r) for _ in range(r.randint(3, 5)))


def g_quiz(w: World, r: ChoiceTracker) -> str:
    def one() -> str:
        p, t = r.choice(w.people), r.choice(w.towns)
        return r.choice((
            lambda: f"Who is the {p.job[0]} in {p.town.name}? It is {p.full}.",
            lambda: f"Where does {p.first} live? {p.first} lives in {p.town.name}.",
            lambda: f"What is the name of {p.first}'s {p.pet}? It is called {p.pet_name}.",
            lambda: f"How old is {p.first}? {cap(p.he)} is {p.age}.",
            lambda: f"Which river flows through {t.name}? The river {t.river}.",
            lambda: f"On which day is the market in {t.name}? It is on {t.market_day}.",
            lambda: f"What is {t.name} famous for? It is famous for its {t.product}.",
            lambda: f"When is the {t.festival} in {t.name}? It is in {t.festival_month}.",
            lambda: (lambda u: f"How far is {t.name} from {u.name}? It is {w.miles(t, u)} miles.")(
                r.choice([u for u in w.towns if u is not t])),
        ))()  # fmt: skip

    return " ".join(one() for _ in range(r.randint(2, 4)))


def _animal_facts(r: ChoiceTracker, animal: tuple[str, ...], k: int) -> list[str]:
    kind, colour, home, food, coat, habit = animal
    many = cap(plural(kind))
    facts = (
        lambda: f"{cap(a(kind))} has {colour} {coat}.",
        lambda: f"{many} live {home}.",
        lambda: f"{many} eat {food}.",
        lambda: f"{many} {habit} {home}.",
        lambda: f"You can often find {plural(kind)} {home}.",
        lambda: f"{cap(a(kind))} {third(habit)} {home} when it is {r.choice(lx.MOODS)}.",
    )
    return [fact() for fact in r.sample(facts, k)]


def g_nature(w: World, r: ChoiceTracker) -> str:
    facts = _animal_facts(r, r.choice(ANIMALS), r.randint(2, 4))
    tree, use = r.choice(lx.TREES)
    flower = r.choice(FLOWERS)
    extra = r.choice((
        f"The wood of the {tree} is used to make {use}.",
        f"{cap(tree)} wood is good for {use}.",
        f"{cap(plural(flower))} bloom in {w.bloom[flower]}.",
        f"In {w.bloom[flower]} the {plural(flower)} come out.",
        f"{cap(a(flower))} flowers in {SEASON_OF[w.bloom[flower]]}.",
    ))  # fmt: skip
    return " ".join([*facts, extra])


def g_calendar(w: World, r: ChoiceTracker) -> str:
    def one() -> str:
        i, j, season = r.below(12), r.below(7), r.choice(lx.SEASONS)
        m, day, flower = lx.MONTHS[i], lx.DAYS[j], r.choice(FLOWERS)
        return r.choice((
            lambda: f"{m} is in {SEASON_OF[m]}.",
            lambda: f"After {m} comes {lx.MONTHS[(i + 1) % 12]}.",
            lambda: f"There are {lx.MONTH_DAYS[i]} days in {m}{' in most years' if i == 1 else ''}.",
            lambda: f"The day after {day} is {lx.DAYS[(j + 1) % 7]}.",
            lambda: f"{day} comes before {lx.DAYS[(j + 1) % 7]}.",
            lambda: f"In {season} the weather is often {' and '.join(r.sample(lx.WEATHER[season], 2))}.",
            lambda: f"{cap(season)} comes after {lx.SEASONS[lx.SEASONS.index(season) - 1]}.",
            lambda: f"{cap(plural(flower))} bloom in {w.bloom[flower]}.",
            lambda: f"The {lx.ORDINALS[i]} month of the year is {m}.",
        ))()  # fmt: skip

    return " ".join(one() for _ in range(r.randint(3, 5)))


def g_recipe(w: World, r: ChoiceTracker) -> str:
    dish, method, minutes, needs = r.choice(lx.DISHES)
    many = dish.endswith("s")
    fans = [p.first for p in w.people if p.food == dish]
    praise = (
        f"It is the favourite food of {listing(fans)}."
        if fans
        else f"People in {r.choice(w.towns).name} often eat it for {r.choice(lx.MEALS)}."
    )
    return " ".join([
        f"To make {dish}, you need {needs}.",
        f"First mix everything in {a(r.choice(('big', 'deep', 'wide', 'clean')))} {r.choice(('bowl', 'dish', 'pot'))}.",
        f"Then {method} {'them' if many else 'it'} for {minutes} minutes.",
        f"{cap(dish)} {'taste' if many else 'tastes'} {' and '.join(r.sample(lx.FOOD_ADJS, 2))}.",
        praise,
    ])  # fmt: skip


def g_weather(w: World, r: ChoiceTracker) -> str:
    t, (m, season) = r.choice(w.towns), month(r)
    first, second, river, hill = r.sample(lx.WEATHER[season], 4)
    p = r.choice(w.residents(t))
    return " ".join([
        f"On {r.choice(lx.DAYS)} the weather in {t.name} was {first} and {second}.",
        f"By the river {t.river} it was {river}, and on {t.hill} Hill it was {hill}.",
        f"{cap(r.choice(lx.WEATHER_NOUNS[season]))} came in the {r.choice(('morning', 'afternoon', 'evening'))}.",
        f"{p.first} the {p.job[0]} had to {p.job[2]} in the {first} weather.",
        f"In {m} the weather in {t.name} is often like this.",
    ])  # fmt: skip
