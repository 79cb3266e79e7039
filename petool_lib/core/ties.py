"""Decisions on embedding similarities that float noise cannot flip.

The same text embedded by another CPU's kernels (AVX2, AVX-512, AMX) differs in the last bits (up to ~2e-7 per
component, measured), and the benchmark's candidate lists are full of near-identical clones whose similarities tie
to within that noise. So similarities are compared at a stated precision, :data:`SIM_TOLERANCE`:

- a choice (:func:`best`) takes every item whose score is within the tolerance of the best score as tied, and
  breaks the tie by the caller's order (candidate order in a prompt; the caller sorts by name where there is none);
- a threshold (:func:`at_least`) is passed by a score within the tolerance below it;
- a ranking (most similar first) puts scores in tie classes (:func:`tie_ranks`: a new class starts where the gap to
  the next higher score exceeds the tolerance), ordered by class, then by the caller's key (index);
- a sort key for pairs (:func:`quantize`) takes scores as multiples of the tolerance, ties by the caller's key (name).

Choices and thresholds use a tolerance, not rounding: two values a hair apart can straddle a rounding edge however
coarse it is, while a tolerance keeps them tied; only a value at the tolerance's edge can still flip (rare: on the
official test set the gap between a prompt's two most query-similar candidates is either below 1e-6 or, with few
exceptions, above 1e-3). :func:`quantize` is the exception (a plain sort key): it accepts that rare straddle.
"""

from __future__ import annotations

from typing import Callable, Iterable, TypeVar

import numpy as np

T = TypeVar("T")

SIM_TOLERANCE = 1e-4  # similarities closer than this are equal (>= 100x the noise of one kernel path vs another)


def best(items: Iterable[T], score: Callable[[T], float], tol: float = SIM_TOLERANCE) -> T:
    """The first item, in the given order, whose score is within ``tol`` of the highest score."""
    seq = list(items)
    if not seq:
        raise ValueError("best() of no items")
    values = [float(score(x)) for x in seq]
    top = max(values)
    return next(x for x, v in zip(seq, values) if v >= top - tol)


def at_least(value: float, threshold: float, tol: float = SIM_TOLERANCE) -> bool:
    """``value >= threshold`` at the stated precision: a value within ``tol`` below the threshold passes."""
    return float(value) >= threshold - tol


def quantize(values: "float | np.ndarray", tol: float = SIM_TOLERANCE) -> "int | np.ndarray":
    """Scores as integer multiples of ``tol`` (nearest): an exact sort key, equal for scores that differ only by
    noise unless they straddle a rounding edge."""
    q = np.rint(np.asarray(values, dtype=np.float64) / tol).astype(np.int64)
    return int(q) if q.ndim == 0 else q


def tie_ranks(values: np.ndarray, tol: float = SIM_TOLERANCE) -> np.ndarray:
    """Rank classes of ``values`` (0 = the highest): sorted from the top, a value starts a new class when it is more
    than ``tol`` below the previous one, so values a chain of near-ties apart share a class."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(-v, kind="stable")
    gaps = -np.diff(v[order])
    ranks = np.empty(len(v), dtype=np.int64)
    ranks[order] = np.concatenate([[0], np.cumsum(gaps > tol)]) if len(v) else []
    return ranks
