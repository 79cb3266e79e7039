"""Fixtures of the inference tests: the test set, six small entries, the tiny random model as a predictor.

The tiny model (a seeded random LLaMA with SmolLM2's tokenizer) is built locally; nothing is downloaded.
"""

from __future__ import annotations

import random

import pytest

from petool_lib.inference.hf import HFPredictor

BUDGET = 1400  # prompt budget of the tiny-model tests: every ``small`` entry fits once history is trimmed


@pytest.fixture(scope="session")
def test_set(official):
    return official


@pytest.fixture(scope="session")
def small(test_set):
    """Six entries whose prompts fit the budget once history is trimmed (fast with the tiny model)."""
    rng = random.Random(1)
    pool = [e for e in test_set if len(e.prompts["preferred"]) - e.prompts["preferred"].find("Available tools") < 3500]
    return sorted(rng.sample(pool, 6), key=lambda e: e.entry_id)


@pytest.fixture(scope="session")
def tiny():
    return HFPredictor("tiny")
