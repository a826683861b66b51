"""Dataclass fields checked against their types once, where the dataclass is built.

Values from JSON, the command line, HTTP or C arrive untyped; a wrong type must be a one-line error naming the field,
not a crash deep in numpy or torch later.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from typing import get_args, get_type_hints

from gptdeploy.errors import GptDeployError


def check_field_types(instance: object, error: type[GptDeployError], what: str) -> None:
    """Raise `error` if a field's value is not of its default's type (for a None default, of the type its annotation
    pairs with None, and None is allowed). Floats accept ints; a bool is never a number."""
    hints = get_type_hints(type(instance))
    for f in fields(instance):
        value = getattr(instance, f.name)
        default = f.default if f.default is not MISSING else f.default_factory()
        if value is None and default is None:
            continue
        if default is None:
            expected = next(arg for arg in get_args(hints[f.name]) if arg is not type(None))
        else:
            expected = type(default)
        if expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        if not ok:
            raise error(f"{what} field {f.name} must be {expected.__name__}, got {value!r}")


def check_ranges(checks: list[tuple[bool, str]], error: type[GptDeployError]) -> None:
    """Raise `error` with the message of the first check that failed."""
    for ok, message in checks:
        if not ok:
            raise error(message)
