"""Benchmarks: the predictor against a reference-style evaluation loop (``predict``) and cpu-profile training against
TRL's defaults (``train``).

CLIs: ``python -m petool_lib bench`` and ``python -m petool_lib bench-train``."""

from __future__ import annotations

from .predict import (  # noqa: F401
    PeakRSS,
    bench_items,
    reference_loop,
    run_phase,
    speedups,
    run_bench,
)

__all__ = [
    "PeakRSS",
    "bench_items",
    "reference_loop",
    "run_phase",
    "speedups",
    "run_bench",
]
