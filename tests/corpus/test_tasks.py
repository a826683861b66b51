"""Fine-tuning tasks: reproducible, held-out kept out of train, answers right and in the documented format."""

import re
from collections import Counter

import pytest

from gptdeploy.corpus.tasks import TASKS, Example, check_answer, generate_tasks
from gptdeploy.errors import DataError


@pytest.fixture(scope="module")
def splits():
    return generate_tasks()


def _expected(example: Example) -> str:
    question = example.prompt.splitlines()[0]
    numbers = list(map(int, re.findall(r"\d+", question)))
    if example.task == "add":
        assert len(numbers) == 2 and all(0 <= n <= 99 for n in numbers)
        return f" {sum(numbers)}"
    if example.task == "sort":
        letters = re.findall(r"\b[a-z]\b", question)
        assert 3 <= len(letters) <= 6 and len(set(letters)) == len(letters)
        return " " + " ".join(sorted(letters))
    assert 3 <= len(numbers) <= 5 and all(0 <= n <= 99 for n in numbers)
    return f" {max(numbers)}"


def test_same_seed_same_examples_different_seed_different(splits):
    assert generate_tasks() == splits
    assert generate_tasks(seed=1)[1] != splits[1]


def test_sizes_and_mix(splits):
    train, heldout = splits
    assert len(train) == 30_000
    assert Counter(e.task for e in heldout) == dict.fromkeys(TASKS, 100)
    assert Counter(e.task for e in train) == dict.fromkeys(TASKS, 10_000)
    assert len({e.task for e in train[:12]}) == 3  # shuffled, not in blocks


def test_heldout_prompts_never_appear_in_train(splits):
    train, heldout = splits
    held = {e.prompt for e in heldout}
    assert len(held) == len(heldout)
    assert not held & {e.prompt for e in train}


def test_completions_are_right(splits):
    train, heldout = splits
    for example in [*heldout, *train[:3_000]]:
        assert example.completion == _expected(example), example


def test_format(splits):
    for example in [*splits[1], *splits[0][:3_000]]:
        assert example.prompt.startswith("Q: ") and example.prompt.endswith("\nA:")
        assert example.completion.startswith(" ") and example.completion == " " + example.completion.strip()


def test_check_answer_and_json():
    example = Example("add", "Q: What is 23 plus 48?\nA:", " 71")
    assert check_answer(example, " 71\n") and check_answer(example, "71")
    assert not check_answer(example, " 72") and not check_answer(example, " 71 2")
    assert list(example.to_json().items()) == [("prompt", example.prompt), ("completion", " 71"), ("task", "add")]


@pytest.mark.parametrize("kwargs", [{"n_train": -1}, {"n_heldout_per_task": -1}, {"n_heldout_per_task": 10**6}])
def test_bad_sizes_are_data_errors(kwargs):
    with pytest.raises(DataError):
        generate_tasks(**kwargs)
