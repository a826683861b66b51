"""Values checked against their declared types once, where they enter: dataclass fields and public functions' arguments.

Values from JSON, the command line, HTTP, C or a caller's Python arrive untyped; a wrong type must be a one-line error
naming the field or parameter, not a crash deep in numpy, torch or ONNX Runtime later.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, is_dataclass
from pathlib import PurePath
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from gptdeploy.errors import GptDeployError

F = TypeVar("F", bound=Callable[..., Any])


def check_field_types(instance: object, error: type[GptDeployError], what: str) -> None:
    """Raise `error` if a field's value does not match its annotation. Floats accept ints; a bool is never a number;
    containers are checked element by element; a Literal field only needs the literals' type (its range check gives
    the better message)."""
    hints = get_type_hints(type(instance))
    for f in fields(instance):
        value = getattr(instance, f.name)
        if not matches(value, hints[f.name]):
            raise error(f"{what} field {f.name} must be {describe(hints[f.name])}, got {value!r}")


def checked_arguments(error: type[GptDeployError]) -> Callable[[F], F]:
    """Decorate a public function so that arguments not matching their annotations raise `error` naming the
    parameter, before the function runs. Annotations this module cannot check (a Protocol, a class only imported
    for type checking) are left alone."""

    def decorate(function: F) -> F:
        signature = inspect.signature(function)

        @functools.lru_cache(maxsize=1)
        def hints() -> dict[str, Any]:
            return _resolved_annotations(function)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as cause:
                raise error(f"{function.__name__}(): {cause}") from cause
            annotations = hints()
            for name, value in bound.arguments.items():
                hint = annotations.get(name)
                if hint is not None and checkable(hint) and not matches(value, hint):
                    raise error(f"{function.__name__}() parameter {name} must be {describe(hint)}, got {value!r}")
            return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _resolved_annotations(function: Callable) -> dict[str, Any]:
    """Each parameter's annotation evaluated on its own, leaving out those naming classes imported only for type
    checking."""
    resolved = {}
    for name, annotation in inspect.get_annotations(function).items():
        try:
            resolved[name] = eval(annotation, function.__globals__) if isinstance(annotation, str) else annotation
        except (NameError, AttributeError, TypeError):
            continue
    return resolved


def matches(value: object, hint: Any) -> bool:
    """Whether `value` is of type `hint` (a class, `X | Y`, Optional, Literal, list/tuple/dict/Sequence of ...)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is Literal:
        return any(isinstance(value, type(arg)) and isinstance(arg, bool) == isinstance(value, bool) for arg in args)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, Sequence) or hint in (list, tuple):
        return _matches_sequence(value, origin or hint, args)
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(matches(k, args[0]) and matches(v, args[1]) for k, v in value.items())
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _matches_sequence(value: object, container: Any, args: tuple) -> bool:
    if container is Sequence:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            return False
    elif not isinstance(value, container):
        return False
    if not args:
        return True
    if container is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
    return all(matches(v, args[0]) for v in value)


def checkable(hint: Any) -> bool:
    """Whether `matches` understands every part of `hint` (Protocols and other abstract types are skipped)."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or hint is None or hint is type(None) or origin is Literal:
        return True
    if origin is not None:
        return origin in (Union, types.UnionType, list, tuple, dict, Sequence, Mapping) and all(
            checkable(arg) for arg in args if arg is not Ellipsis
        )
    if not isinstance(hint, type):
        return False
    return not getattr(hint, "_is_protocol", False) and (
        hint.__module__ == "builtins" or is_dataclass(hint) or issubclass(hint, PurePath)
    )


def describe(hint: Any) -> str:
    """A type as a message names it: 'int', 'float or None', 'list of str'."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is None or hint is type(None):
        return "None"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is Literal:
        return " or ".join(repr(arg) for arg in args)
    if origin in (list, tuple, Sequence) and args:
        return f"a {getattr(origin, '__name__', 'sequence')} of {describe(args[0])}"
    if origin in (dict, Mapping) and args:
        return f"a dict of {describe(args[0])} to {describe(args[1])}"
    return getattr(hint, "__name__", str(hint))


def check_ranges(checks: list[tuple[bool, str]], error: type[GptDeployError]) -> None:
    """Raise `error` with the message of the first check that failed."""
    for ok, message in checks:
        if not ok:
            raise error(message)
