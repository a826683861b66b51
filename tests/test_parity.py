import math

import numpy as np
import pytest

from gptdeploy.golden import Golden, compute_golden, load_golden, save_golden
from gptdeploy.parity import Tolerance, check_parity
from gptdeploy.runtimes.torch_runtime import TorchRuntime
from tests.helpers import tiny_model

LOOSE_LOGITS = dict(max_logit_diff=math.inf, mean_kl=math.inf, top1_agreement=0.0)


@pytest.fixture(scope="module")
def runtime(tokenizer):
    return TorchRuntime(tiny_model(seed=2), tokenizer)


@pytest.fixture(scope="module")
def golden(runtime):
    return compute_golden(runtime, ["Mia lives in", "The market", "Q: What is 2 plus 3?\nA:"], new_tokens=6)


def test_golden_references_round_trip_without_pickle(golden, tmp_path):
    loaded = load_golden(save_golden(tmp_path / "golden.npz", golden))
    assert loaded.prompts == golden.prompts and loaded.prompt_lengths == golden.prompt_lengths
    assert all(np.array_equal(a, b) for a, b in zip(loaded.tokens, golden.tokens, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(loaded.logits, golden.logits, strict=True))
    assert all(len(golden.continuation(i)) == 6 for i in range(3))


def test_the_reference_matches_its_own_golden_exactly(runtime, golden):
    report = check_parity(runtime, golden)
    assert report, report.failures
    assert report.max_abs_logit_diff == 0.0 and report.greedy_identical == 3 and report.top1_agreement == 1.0
    assert report.batch_matches_single and report.cache_vs_recompute_max_diff < 1e-4


def test_perturbed_logits_fail_with_the_numbers(runtime, golden):
    noisy = Golden(golden.prompts, golden.prompt_lengths, golden.tokens, [g + 0.01 * np.sign(g) for g in golden.logits])
    report = check_parity(runtime, noisy)
    assert not report
    assert any("max logit diff" in failure for failure in report.failures)
    assert report.max_abs_logit_diff > 1e-3


def _diverging_golden(runtime, golden) -> tuple[Golden, float]:
    """The golden continuation of prompt 0 swapped at step 0 for the runtime's second choice."""
    position = golden.prompt_lengths[0] - 1
    top2 = np.sort(golden.logits[0][position])[-2:]
    tokens = [t.copy() for t in golden.tokens]
    tokens[0][position + 1] = int(np.argsort(golden.logits[0][position])[-2])
    return Golden(golden.prompts, golden.prompt_lengths, tokens, golden.logits), float(top2[1] - top2[0])


def test_a_divergence_at_a_near_tie_is_reported_but_passes(runtime, golden):
    diverging, margin = _diverging_golden(runtime, golden)
    report = check_parity(runtime, diverging, Tolerance(near_tie=margin * 2, **LOOSE_LOGITS))
    assert report, report.failures
    assert report.divergences == [
        {"prompt": golden.prompts[0], "step": 0, "reference_margin": margin, "near_tie": True}
    ]


def test_a_confident_flip_fails(runtime, golden):
    diverging, margin = _diverging_golden(runtime, golden)
    report = check_parity(runtime, diverging, Tolerance(near_tie=margin / 2, **LOOSE_LOGITS))
    assert not report and "diverged at step 0 where the reference was confident" in report.failures[0]


class BatchDependent:
    """The real runtime, except that the first decode call for several slots swaps the first slot's top two logits:
    a row whose token depends on its batch-mates, as dynamic int8's per-batch activation scales can make it."""

    def __init__(self, runtime):
        self.runtime, self.swapped = runtime, False

    def __getattr__(self, name):
        return getattr(self.runtime, name)

    def decode(self, slots, tokens):
        logits = self.runtime.decode(slots, tokens).copy()
        if len(slots) > 1 and not self.swapped:
            self.swapped = True
            first, second = np.argsort(logits[0])[-2:][::-1]
            logits[0, [first, second]] = logits[0, [second, first]]
        return logits


def test_a_batch_row_may_differ_from_the_row_alone_only_at_a_near_tie(runtime, golden):
    position = golden.prompt_lengths[0]  # decode step 1 of prompt 0 (step 0 comes from its prefill)
    top2 = np.sort(golden.logits[0][position])[-2:]
    margin = float(top2[1] - top2[0])
    tied = check_parity(BatchDependent(runtime), golden, Tolerance(near_tie=margin * 2, **LOOSE_LOGITS))
    assert tied, tied.failures
    assert not tied.batch_matches_single
    assert tied.batch_divergences == [
        {"prompt": golden.prompts[0], "step": 1, "reference_margin": margin, "near_tie": True}
    ]
    confident = check_parity(BatchDependent(runtime), golden, Tolerance(near_tie=margin / 2, **LOOSE_LOGITS))
    assert not confident
    assert any(f.startswith(f"decoded together with the other prompts, {golden.prompts[0]!r} gives another token "
                            "at step 1 than alone") for f in confident.failures), confident.failures  # fmt: skip


class Corrupting:
    """The real runtime, with one logit of one prefill or decode call replaced: what a broken fp16/int8 graph
    produces."""

    def __init__(self, runtime, value: float, call: int):
        self.runtime, self.value, self.call, self.calls = runtime, value, call, 0

    def __getattr__(self, name):
        return getattr(self.runtime, name)

    def prefill(self, slot, tokens, all_logits=False):
        return self._corrupt(self.runtime.prefill(slot, tokens, all_logits).copy())

    def decode(self, slots, tokens):
        return self._corrupt(self.runtime.decode(slots, tokens).copy())

    def _corrupt(self, logits):
        self.calls += 1
        if self.calls == self.call:
            logits.reshape(-1)[logits.size // 2] = self.value
        return logits


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "int4"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_one_non_finite_logit_fails_every_budget(runtime, golden, precision, value):
    from gptdeploy.parity import TOLERANCES

    report = check_parity(Corrupting(runtime, value, call=1), golden, TOLERANCES[precision])
    assert not report
    assert "1 teacher-forced logits are NaN or inf" in report.failures
    assert any(failure.startswith(("max logit diff", "mean KL")) for failure in report.failures), report.failures


@pytest.mark.parametrize("precision", ["fp32", "int4"])
def test_a_non_finite_logit_while_decoding_fails_too(runtime, golden, precision):
    """The teacher-forced pass is clean; a NaN in a decode step stops greedy decoding instead of passing."""
    from gptdeploy.parity import TOLERANCES

    calls = len(golden.prompts) + 2  # past the teacher-forced passes: inside free-running decoding
    report = check_parity(Corrupting(runtime, math.nan, call=calls), golden, TOLERANCES[precision])
    assert not report and any("greedy decoding stopped: the model produced 1 non-finite" in f for f in report.failures)
