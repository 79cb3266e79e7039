"""Harness: scoring (paper-exact and robust), evaluation of prediction files, prompt-only baselines, the
seen/unseen split and error analysis.

CLIs: ``python -m petool_lib evaluate|baselines``."""

from __future__ import annotations

from .scoring import (  # noqa: F401
    PAPER_PATTERN,
    SCORINGS,
    ERROR_CATEGORIES,
    Call,
    parse_paper,
    parse_robust,
    params_equal,
    RowScore,
    classify,
    score_response,
)
from .evaluate import (  # noqa: F401
    HISTORY_BINS,
    PredictionError,
    validate_rows,
    load_predictions,
    write_predictions,
    score_rows,
    summarize,
    slices,
    evaluate_rows,
    format_table,
)
from .baselines import (  # noqa: F401
    METHODS,
    SAME_JOB_THRESHOLD,
    MULTI_MEMBER_BONUS,
    HISTORY_BONUS,
    candidate_text,
    fill_parameters,
    provider_scores,
    BaselinePredictor,
    predict_baseline,
)
from .seen import (  # noqa: F401
    MANIFEST_KEY,
    seen_apis,
    seen_unseen_summary,
)
from .analysis import (  # noqa: F401
    SEVERITY,
    score_files,
    covered_entries,
    score_run_files,
    common_entries,
    accuracy_cells,
    slices_by_method,
    worst_examples,
)

__all__ = [
    "PAPER_PATTERN",
    "SCORINGS",
    "ERROR_CATEGORIES",
    "Call",
    "parse_paper",
    "parse_robust",
    "params_equal",
    "RowScore",
    "classify",
    "score_response",
    "HISTORY_BINS",
    "PredictionError",
    "validate_rows",
    "load_predictions",
    "write_predictions",
    "score_rows",
    "summarize",
    "slices",
    "evaluate_rows",
    "format_table",
    "METHODS",
    "SAME_JOB_THRESHOLD",
    "MULTI_MEMBER_BONUS",
    "HISTORY_BONUS",
    "candidate_text",
    "fill_parameters",
    "provider_scores",
    "BaselinePredictor",
    "predict_baseline",
    "MANIFEST_KEY",
    "seen_apis",
    "seen_unseen_summary",
    "SEVERITY",
    "score_files",
    "covered_entries",
    "score_run_files",
    "common_entries",
    "accuracy_cells",
    "slices_by_method",
    "worst_examples",
]
