"""Types checked where values enter: dataclass fields and public functions' arguments."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from gptdeploy.errors import ConfigError, GenerationError
from gptdeploy.validation import check_field_types, checked_arguments, describe, matches


@pytest.mark.parametrize(
    ("value", "hint", "ok"),
    [
        (3, int, True), (True, int, False), (3.0, int, False), (3, float, True), (True, float, False),
        (None, int | None, True), ("a", int | None, False), ("x", Literal["x", "y"], True), (1, Literal["x"], False),
        (["a"], list[str], True), (["a", 1], list[str], False), ((1.0, 2), tuple[float, float], True),
        ((1.0,), tuple[float, float], False), (("a", "b"), tuple[str, ...], True), (["a"], tuple[str, ...], False),
        ({"a": 1}, dict[str, int], True), ({"a": "1"}, dict[str, int], False), ({1: 1}, dict[str, int], False),
        ("abc", Sequence[str], False), (["abc"], Sequence[str], True), (Path("x"), str | Path, True),
        (3, str | Path, False), ({"k": [1]}, dict, True), ([], dict, False),
    ],
)  # fmt: skip
def test_values_match_their_annotations(value, hint, ok):
    assert matches(value, hint) is ok


def test_types_are_described_as_messages_name_them():
    assert describe(int | None) == "int or None"
    assert describe(dict[str, int]) == "a dict of str to int"
    assert describe(tuple[str, ...]) == "a tuple of str"


@dataclass(frozen=True)
class Settings:
    steps: int
    rate: float = 0.1
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_field_types(self, ConfigError, "settings")


def test_dataclass_fields_are_checked_required_ones_included():
    Settings(3, 1, ("a",))
    with pytest.raises(ConfigError, match="settings field steps must be int, got '3'"):
        Settings("3")
    with pytest.raises(ConfigError, match=r"settings field names must be a tuple of str, got \('a', 2\)"):
        Settings(3, names=("a", 2))


@checked_arguments(GenerationError)
def complete(prompts: str | Sequence[str], count: int = 1, model: "NotImportedHere" = None) -> str:  # noqa: F821
    return "done"


def test_public_functions_check_their_arguments_before_running():
    assert complete(["a", "b"], 2) == "done"
    assert complete("a", model=object()) == "done"  # an annotation that names no importable class is not checked
    with pytest.raises(GenerationError, match="complete\\(\\) parameter count must be int, got 2.5"):
        complete("a", 2.5)
    with pytest.raises(GenerationError, match="complete\\(\\) parameter prompts must be str or a Sequence of str"):
        complete([b"bytes"])
    with pytest.raises(GenerationError, match="complete\\(\\): got an unexpected keyword argument 'steps'"):
        complete("a", steps=3)
