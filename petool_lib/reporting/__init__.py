"""Reporting: the results tables (README block, published numbers) and the error-analysis figures."""

from __future__ import annotations

from .compare import compare_runs, format_report  # noqa: F401
from .report import (  # noqa: F401
    PUBLISHED_RATINGS,
    README_START,
    README_END,
    SETTING_LABEL,
    record_evaluation,
    results_table,
    transfer_gap,
    published_table,
    readme_block,
    update_readme,
)
from .plots import (  # noqa: F401
    taxonomy_bars,
    slice_lines,
    slice_series,
    category_heatmap,
)
from .evaluation import (  # noqa: F401
    SECTIONS,
    STAGE_ADAPTERS,
    load_evaluation,
    save_evaluation,
    load_test_sets,
    record_scores,
    evaluate_baselines,
    evaluate_predictor,
    ABLATIONS,
    parse_ablations,
    ABLATION_MODELS,
    ablation_models,
    evaluate_ablations,
    run_adapters,
    evaluate_seen,
)

__all__ = [
    "compare_runs",
    "format_report",
    "PUBLISHED_RATINGS",
    "README_START",
    "README_END",
    "SETTING_LABEL",
    "record_evaluation",
    "results_table",
    "transfer_gap",
    "published_table",
    "readme_block",
    "update_readme",
    "taxonomy_bars",
    "slice_lines",
    "slice_series",
    "category_heatmap",
    "SECTIONS",
    "STAGE_ADAPTERS",
    "load_evaluation",
    "save_evaluation",
    "load_test_sets",
    "record_scores",
    "evaluate_baselines",
    "evaluate_predictor",
    "ABLATIONS",
    "parse_ablations",
    "ABLATION_MODELS",
    "ablation_models",
    "evaluate_ablations",
    "run_adapters",
    "evaluate_seen",
]
