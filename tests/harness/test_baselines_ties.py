"""The baselines' choices do not hinge on float noise: 1e-6 on every embedding component changes no prediction
(before the tolerance it changed 372 functional and 186 history predictions of the 3,000), and ties go to the
earliest candidate in the prompt."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from petool_lib.core.data import resolve_settings, select_subset
from petool_lib.core.embeddings import Embedder
from petool_lib.core.prompts import Prompt
from petool_lib.core.ties import SIM_TOLERANCE
from petool_lib.harness.baselines import (
    SAME_JOB_THRESHOLD, BaselinePredictor, _api_key, _param_signature, baseline_prompts, candidate_text,
    predict_baseline,
)

NOISE = 1e-6


class NoisyEmbedder:
    """Another machine, simulated: every component of every vector moved by +-``eps`` (a sign per component,
    seeded by the text, so one text always gets the same vector)."""

    def __init__(self, inner: Embedder, eps: float = NOISE) -> None:
        self.inner, self.eps, self.backend = inner, eps, inner.backend

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        vecs = self.inner.encode(texts).astype(np.float64)
        for k, text in enumerate(texts):
            rng = np.random.default_rng(int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:12], 16))
            vecs[k] += self.eps * rng.choice([-1.0, 1.0], size=vecs.shape[1])
        return vecs.astype(np.float32)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


def _changed(entries, embedder, method: str) -> int:
    a = predict_baseline(entries, method, embedder=embedder, progress=False)
    b = predict_baseline(entries, method, embedder=NoisyEmbedder(embedder), progress=False)
    assert [(r["entry_id"], r["setting"]) for r in a] == [(r["entry_id"], r["setting"]) for r in b]
    return sum(x["response"] != y["response"] for x, y in zip(a, b))


@pytest.mark.parametrize("method", ["functional", "history"])
def test_noise_changes_no_prediction_on_a_subset(official, embedder, method):
    sub = select_subset(official, 100, seed=5)  # 300 prompts; the full 3,000 are the slow test below
    assert _changed(sub, embedder, method) == 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["functional", "history"])
def test_noise_changes_no_prediction_on_all_3000_official_prompts(official, embedder, method):
    assert _changed(official, embedder, method) == 0


class FixedEmbedder:
    """Given vectors per text (unit vectors in 2-D)."""

    backend = "fixed"

    def __init__(self, vecs: dict[str, tuple[float, float]]) -> None:
        self.vecs = vecs

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        return np.array([self.vecs[t] for t in texts], dtype=np.float32)


def _cand(tool: str, desc: str) -> dict:
    return {"tool_name": tool, "tool_description": desc, "required_parameters": [], "optional_parameters": []}


def test_a_near_tie_goes_to_the_earliest_candidate_not_to_the_last_bits():
    angle = float(np.sqrt(2 * SIM_TOLERANCE / 10))  # similarities 1 and cos(angle) = 1 - 1e-5: within the tolerance
    emb = FixedEmbedder({"query": (1.0, 0.0), "fetch: a": (1.0, 0.0), "grab: b": (np.cos(angle), np.sin(angle)),
                         "other: c": (0.0, 1.0)})
    a, b, c = _cand("<X>.<P1>.<fetch>", "a"), _cand("<X>.<P2>.<grab>", "b"), _cand("<X>.<P3>.<other>", "c")
    pred = BaselinePredictor("functional", embedder=emb)
    for order in ([a, b, c], [b, a, c], [c, b, a]):
        chosen = pred.choose(Prompt("preferred", [], order), "query")
        assert chosen is (b if order[0] is c else order[0])  # the first of the tied pair, not the higher by 1e-5


def test_no_same_job_pair_sits_at_the_thresholds_edge(official, embedder):
    """A margin for the clustering threshold on the official prompts: every same-parameter pair's similarity is at
    least 2e-5 away from the effective edge SAME_JOB_THRESHOLD - SIM_TOLERANCE (20x the test's noise)."""
    prompts = baseline_prompts(official, resolve_settings("preferred"))
    texts = sorted({candidate_text(c) for p in prompts.values() for c in p.candidates})
    vec = dict(zip(texts, embedder.encode(texts)))
    edge, closest = SAME_JOB_THRESHOLD - SIM_TOLERANCE, 1.0
    for p in prompts.values():
        c = p.candidates
        v = np.stack([vec[candidate_text(x)] for x in c])
        sims = v @ v.T
        for i in range(len(c)):
            for j in range(i + 1, len(c)):
                if _param_signature(c[i]) == _param_signature(c[j]) and _api_key(c[i]) != _api_key(c[j]):
                    closest = min(closest, abs(float(sims[i, j]) - edge))
    assert closest >= 2e-5, closest


def test_predictions_name_a_candidate(official, embedder):
    sub = official[:20]
    for method in ("functional", "history"):
        for r in predict_baseline(sub, method, embedder=embedder, progress=False):
            e = next(x for x in sub if x.entry_id == r["entry_id"])
            assert json.loads(r["response"])["tool_name"] in e.candidate_names
