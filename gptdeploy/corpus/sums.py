"""Counting sums: one-sentence word problems whose numbers are computed, so the arithmetic is always right.

They keep fixed forms ("... and gave 5 to Tom, so she had 7 left") that the tests parse, so they are kept
apart from the free-form stories, which borrow them (a sum among a day's events, prices at the market).
"""

from __future__ import annotations

from gptdeploy.corpus import lexicon as lx
from gptdeploy.corpus.english import cap, nouns, plural
from gptdeploy.corpus.entities import ChoiceTracker, World
from gptdeploy.corpus.narrative import PICKED, Voice, other

CONTAINERS = nouns(lx.CONTAINERS)


def m_give(w: World, r: ChoiceTracker, v: Voice) -> str:
    n, q = r.randint(4, 30), other(w, r, v.p)
    k = r.randint(1, n - 1)
    return f"{v.who(r)} had {n} {plural(r.choice(w.items))} and gave {k} to {q.first}, so {v.pron} had {n - k} left"


def m_more(w: World, r: ChoiceTracker, v: Voice) -> str:
    n, k = r.randint(2, 40), r.randint(2, 30)
    return f"{v.who(r)} had {n} {plural(r.choice(w.items))} and bought {k} more, so now {v.pron} had {n + k}"


def m_together(w: World, r: ChoiceTracker, v: Voice) -> str:
    x, y, q, item = r.randint(2, 40), r.randint(2, 40), other(w, r, v.p), plural(r.choice(PICKED))
    return f"{v.who(r)} picked {x} {item} and {q.first} picked {y}, so together they picked {x + y} {item}"


def m_groups(w: World, r: ChoiceTracker, v: Voice) -> str:
    x, y, item, box = r.randint(2, 12), r.randint(2, 9), plural(r.choice(w.items)), plural(r.choice(CONTAINERS))
    return f"{v.who(r)} put {x} {item} in each of {y} {box}, so there were {x * y} {item} in all"


def m_share(w: World, r: ChoiceTracker, v: Voice) -> str:
    x, y, item = r.randint(2, 9), r.randint(2, 8), plural(r.choice(w.items))
    return f"{v.who(r)} shared {x * y} {item} equally among {y} friends, so each friend got {x}"


def m_price(w: World, r: ChoiceTracker, v: Voice) -> str:
    item, n = r.choice(w.items), r.randint(2, 9)
    each = w.prices[item]
    given = next(c for c in (10, 20, 50, 100) if c > n * each)
    return r.choice((
        lambda: f"{v.who(r)} bought {n} {plural(item)} at {each} pennies each, so {v.pron} paid {n * each} pennies",
        lambda: f"{v.who(r)} bought {n} {plural(item)} for {n * each} pennies, handed over {given} pennies and got "
        f"{given - n * each} back",
        lambda: f"at the market one {item} costs {each} pennies",
    ))()  # fmt: skip


SUMS = (m_give, m_more, m_together, m_groups, m_share, m_price)


def g_sums(w: World, r: ChoiceTracker) -> str:
    people = r.sample(w.people, r.randint(2, 4))
    return " ".join(cap(r.choice(SUMS)(w, r, Voice(p))) + "." for p in people)
