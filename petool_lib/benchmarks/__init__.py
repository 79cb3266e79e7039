"""Benchmarks: the predictor against a reference-style evaluation loop (``predict``), cpu-profile training against
TRL's defaults (``train``), the learning curve that chooses the number of training rows (``learning_curve``), and
the minimal-pair check of whether a model reads the ratings / the order at all (``minimal_pairs``).

CLIs: ``python -m petool_lib bench``, ``bench-train``, ``learning-curve`` and ``minimal-pairs``.

The names load lazily (a name imports only its module), so ``python -m petool_lib learning-curve`` can import
Unsloth before anything imports torch / transformers on a GPU."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# module -> the public names it provides through this façade
_EXPORTS: dict[str, tuple[str, ...]] = {
    "predict": ("PeakRSS", "bench_items", "reference_loop", "run_phase", "speedups", "run_bench"),
    "learning_curve": ("run_learning_curve", "parse_sizes", "plan_steps", "StepRecorder", "plot_curve"),
    "minimal_pairs": ("PairReport", "pair_indices", "pair_report", "prepare_pairs", "measure_pairs"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [name for names in _EXPORTS.values() for name in names]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names load on first use
    from .learning_curve import *  # noqa: F401,F403
    from .minimal_pairs import *  # noqa: F401,F403
    from .predict import *  # noqa: F401,F403
