"""Just enough English morphology for the synthetic corpus: plurals, verb forms, articles and lists.

Irregular forms come from the lexicon entries ("knife/knives", "run/ran/running"); the regular ones follow
the spelling rules below, so every word the generator writes is spelled correctly.
"""

from collections.abc import Sequence

from gptdeploy.corpus import lexicon as lx

_PLURALS: dict[str, str] = {}


def nouns(entries: Sequence[str]) -> tuple[str, ...]:
    """Strip the "/plural" from lexicon entries, remembering irregular plurals."""
    singulars = []
    for entry in entries:
        singular, _, irregular = entry.partition("/")
        if irregular:
            _PLURALS[singular] = irregular
        singulars.append(singular)
    return tuple(singulars)


def plural(noun: str) -> str:
    """Plural of a noun or of an adjective-noun phrase: 'old knife' -> 'old knives'."""
    words = noun.split(" ")
    for i in range(len(words)):
        tail = " ".join(words[i:])
        if tail in _PLURALS:
            return " ".join([*words[:i], _PLURALS[tail]])
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _ing(base: str, past: str) -> str:
    if past == base + base[-1] + "ed":
        return base + base[-1] + "ing"
    if base.endswith("ie"):
        return base[:-2] + "ying"
    if base.endswith("e") and not base.endswith(("ee", "oe", "ye")):
        return base[:-1] + "ing"
    return base + "ing"


def _third(base: str) -> str:
    if base.endswith(("s", "x", "z", "ch", "sh")):
        return base + "es"
    if base.endswith("y") and base[-2] not in "aeiou":
        return base[:-1] + "ies"
    return base + "s"


_VERBS: dict[str, tuple[str, str, str]] = {}
for _entry in lx.VERBS:
    _base, _past, *_ing_form = _entry.split("/")
    _VERBS[_base] = (_third(_base), _past, _ing_form[0] if _ing_form else _ing(_base, _past))


def _conjugate(phrase: str, form: int) -> str:
    verb, _, rest = phrase.partition(" ")
    return f"{_VERBS[verb][form]} {rest}".rstrip()


def third(phrase: str) -> str:
    """'bake bread' -> 'bakes bread'."""
    return _conjugate(phrase, 0)


def past(phrase: str) -> str:
    """'bake bread' -> 'baked bread'."""
    return _conjugate(phrase, 1)


def ing(phrase: str) -> str:
    """'bake bread' -> 'baking bread'."""
    return _conjugate(phrase, 2)


def counted(n: int, noun: str) -> str:
    """'1 mile', '7 miles'."""
    return f"{n} {noun if n == 1 else plural(noun)}"


def a(phrase: str) -> str:
    """The phrase with its indefinite article."""
    lower = phrase.lower()
    vowel = lower[0] in "aeiou" and not lower.startswith(("uni", "use", "eu", "one", "ewe"))
    return ("an " if vowel or lower.startswith(("hour", "honest")) else "a ") + phrase


def listing(items: Sequence[str]) -> str:
    """'a, b and c'."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_UNITS = lx.NUMBER_WORDS
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """0-99 in words: 42 -> 'forty-two'."""
    if n < 20:
        return _UNITS[n]
    tens, units = divmod(n, 10)
    return _TENS[tens - 2] + (f"-{_UNITS[units]}" if units else "")


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]
