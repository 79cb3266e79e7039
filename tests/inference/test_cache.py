"""The prediction cache: keys from content (not names), torn lines ignored, failed rows never persisted."""

from __future__ import annotations

import json

from petool_lib.inference.cache import PredictionCache, adapter_hash, cache_key, digest, model_fingerprint


def test_cache_key_depends_on_content_not_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, w in ((a, b"weights-1"), (b, b"weights-2")):
        d.mkdir()
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(w)
    assert model_fingerprint(str(a)) != model_fingerprint(str(b))
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_model.safetensors").write_bytes(b"x")
    h1 = adapter_hash(tmp_path / "ad")
    (tmp_path / "ad" / "adapter_model.safetensors").write_bytes(b"y")
    assert adapter_hash(tmp_path / "ad") != h1
    ident = {"backend": "hf", "model": "m", "adapter": h1}
    k = cache_key(ident, "p", "c", "rank", {"x": 1})
    assert k != cache_key({**ident, "adapter": "other"}, "p", "c", "rank", {"x": 1})
    assert k != cache_key(ident, "p", "c", "constrained", {"x": 1})
    assert k != cache_key(ident, "p", "c", "rank", {"x": 2})


def test_cache_key_is_stable():
    """Existing caches stay valid only while the key of the same inputs stays the same (sha256 of sorted JSON)."""
    ident = {"backend": "hf", "model": "dir:abc", "adapter": None, "dtype": "torch.float32"}
    dec = {"max_value_chars": 8, "max_number_chars": 20, "rank_score": "sum"}
    assert cache_key(ident, "p", "c", "rank", dec) == cache_key(dict(reversed(ident.items())), "p", "c", "rank", dec)
    # the value the pre-refactor code gave (petool_lib/pred_cache.py): a changed key would orphan every cache
    assert cache_key(ident, "p", "c", "rank", dec) == "9640a488ac8ac326f5771ec58b904c5d841e346b3ca0119f78efb197a33a2ce9"
    assert digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})


def test_reload_ignores_a_torn_line_and_keeps_failures_in_memory_only(tmp_path):
    path = tmp_path / ".cache" / "p.cache.jsonl"
    store = PredictionCache(path)
    store.put_many([("k1", {"response": "a", "error": None}), ("k2", {"response": "", "error": "boom"})])
    assert "k1" in store and "k2" in store and len(store) == 2
    assert [json.loads(x)["key"] for x in path.read_text().splitlines()] == ["k1"]  # the failure is not persisted
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"key": "k3", "row": {"resp')  # an interrupted write
    again = PredictionCache(path)
    assert len(again) == 1 and again.get("k1") == {"response": "a", "error": None} and "k2" not in again
    again.put_many([("k4", {"response": "b"})])  # never glued onto the torn line
    assert set(PredictionCache(path).rows) == {"k1", "k4"}
    assert len(PredictionCache(None)) == 0
