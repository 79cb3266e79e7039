"""Decisions at a stated precision: ties within SIM_TOLERANCE go to the caller's order."""

import numpy as np
import pytest

from petool_lib.core.ties import SIM_TOLERANCE, at_least, best, quantize, tie_ranks


def test_best_takes_the_first_item_within_the_tolerance_of_the_top():
    scores = {"a": 0.5, "b": 0.9, "c": 0.9 + SIM_TOLERANCE / 2, "d": 0.9 + 3 * SIM_TOLERANCE}
    assert best("abc", scores.__getitem__) == "b"  # c is higher by less than the tolerance: tied, b comes first
    assert best("cba", scores.__getitem__) == "c"
    assert best("abcd", scores.__getitem__) == "d"  # clearly higher
    with pytest.raises(ValueError):
        best([], float)


def test_best_does_not_move_under_noise_far_below_the_tolerance():
    rng = np.random.default_rng(0)
    base = [0.7, 0.8, 0.8, 0.8, 0.6]  # three exact ties
    for _ in range(200):
        noisy = np.array(base) + rng.uniform(-1e-6, 1e-6, len(base))
        assert best(range(len(base)), lambda i: noisy[i]) == 1


def test_at_least_passes_a_value_a_hair_below_the_threshold():
    assert at_least(0.9, 0.9) and at_least(0.9 - SIM_TOLERANCE / 2, 0.9) and at_least(0.95, 0.9)
    assert not at_least(0.9 - 2 * SIM_TOLERANCE, 0.9)


def test_quantize_is_an_integer_key():
    assert quantize(0.12344) == quantize(0.12344 + 1e-7) == 1234
    assert quantize(np.array([0.1, 0.2])).tolist() == [1000, 2000]
    assert isinstance(quantize(0.5), int)


def test_tie_ranks_chain_near_ties_into_one_class():
    t = SIM_TOLERANCE
    v = np.array([0.5, 0.9, 0.9 - t / 2, 0.9 - t, 0.7, -np.inf])  # 0.9 .. 0.9-t is a chain of near-ties
    assert tie_ranks(v).tolist() == [2, 0, 0, 0, 1, 3]
    assert tie_ranks(np.array([])).tolist() == []
