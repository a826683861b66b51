from dataclasses import replace

import numpy as np
import pytest

from gptdeploy.errors import GenerationError
from gptdeploy.sampling import Sampler, SamplingParams, penalize_repeats, token_probabilities

LOGITS = np.array([2.0, 1.0, 0.5, 0.0, -1.0, -3.0], dtype=np.float32)


def draw(params: SamplingParams, n: int, seed: int = 0, logits=LOGITS) -> np.ndarray:
    sampler = Sampler(replace(params, seed=seed), [0])
    return np.array([sampler.sample(logits[None], [0])[0] for _ in range(n)])


def test_temperature_zero_is_argmax_with_first_index_on_ties():
    assert draw(SamplingParams(), 5).tolist() == [0] * 5
    tied = np.array([1.0, 3.0, 3.0, 0.0], dtype=np.float32)
    assert Sampler(SamplingParams(), [0]).sample(tied[None], [0]) == [1]


def test_samples_follow_the_softmax_distribution():
    counts = np.bincount(draw(SamplingParams(temperature=1.0), 20_000), minlength=len(LOGITS)) / 20_000
    expected = np.exp(LOGITS) / np.exp(LOGITS).sum()
    assert np.abs(counts - expected).max() < 0.015


def test_temperature_sharpens_and_flattens():
    cold = token_probabilities(LOGITS.astype(np.float64), SamplingParams(temperature=0.5))
    hot = token_probabilities(LOGITS.astype(np.float64), SamplingParams(temperature=2.0))
    assert cold[0] > hot[0] and cold[-1] < hot[-1]


def test_top_k_keeps_the_k_most_likely():
    probs = token_probabilities(LOGITS.astype(np.float64), SamplingParams(temperature=1.0, top_k=2))
    assert np.count_nonzero(probs) == 2 and probs[:2].sum() == pytest.approx(1.0)
    assert set(draw(SamplingParams(temperature=1.0, top_k=2), 500).tolist()) == {0, 1}


def test_top_p_keeps_the_smallest_set_reaching_p():
    full = token_probabilities(LOGITS.astype(np.float64), SamplingParams(temperature=1.0))
    p = full[0] + full[1] / 2  # reached only once the second token is in
    probs = token_probabilities(LOGITS.astype(np.float64), SamplingParams(temperature=1.0, top_p=p))
    assert np.flatnonzero(probs).tolist() == [0, 1]


def test_min_p_drops_tokens_far_below_the_best():
    probs = token_probabilities(LOGITS.astype(np.float64), SamplingParams(temperature=1.0, min_p=0.3))
    assert np.flatnonzero(probs).tolist() == [0, 1]  # e^-1 = 0.37 of the best stays, e^-1.5 = 0.22 goes


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    penalized = penalize_repeats(LOGITS.astype(np.float64), [0, 5, 5], 2.0)
    assert penalized[0] == 1.0 and penalized[5] == -6.0 and penalized[1] == 1.0
    assert Sampler(SamplingParams(repetition_penalty=4.0), [0]).sample(LOGITS[None], [0], [[0]]) == [1]


def test_same_seed_same_tokens_and_rows_are_independent_of_the_batch():
    params = SamplingParams(temperature=1.0)
    assert draw(params, 50, seed=7).tolist() == draw(params, 50, seed=7).tolist()
    assert draw(params, 50, seed=7).tolist() != draw(params, 50, seed=8).tolist()
    alone = Sampler(replace(params, seed=7), [3]).sample(LOGITS[None], [3])
    in_batch = Sampler(replace(params, seed=7), [0, 3]).sample(np.stack([LOGITS, LOGITS]), [0, 3])
    assert in_batch[1] == alone[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(temperature=-0.1), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-1), "top_k"),
        (dict(min_p=1.0), "min_p"),
        (dict(repetition_penalty=0.0), "repetition_penalty"),
        (dict(seed=-1), "seed must be >= 0"),
        (dict(top_k=2.5), "sampling field top_k must be int, got 2.5"),
        (dict(temperature="hot"), "sampling field temperature must be float"),
        (dict(seed=True), "sampling field seed must be int"),
    ],
)
def test_invalid_parameters_are_refused(kwargs, message):
    with pytest.raises(GenerationError, match=message):
        SamplingParams(**kwargs)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_non_finite_logits_are_an_error_not_a_token(value, temperature):
    from gptdeploy.errors import NonFiniteLogitsError

    logits = np.zeros((1, 8), dtype=np.float32)
    logits[0, 3] = value
    with pytest.raises(NonFiniteLogitsError, match="1 non-finite logits \\(NaN or inf\\).*gptdeploy parity"):
        Sampler(SamplingParams(temperature=temperature), [0]).sample(logits, [0])
