"""Harness: scoring (paper-exact and robust), evaluation of prediction files, prompt-only baselines, the
seen/unseen split, error analysis, decision cases (what the history shows; the history oracle) and the
provider-renaming probe.

CLIs: ``python -m petool_lib evaluate|baselines|probe-rename``."""

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
    wilson_interval,
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
    EVIDENCE_BINS,
    evidence_kept,
    with_evidence_kept,
    slices_by_method,
    worst_examples,
)
from .cases import (  # noqa: F401
    CASES,
    decision_case,
    decision_cases,
    history_choice,
    history_oracle,
)
from .probes import (  # noqa: F401
    provider_mapping,
    rename_providers,
    rename_test_set,
)

__all__ = [
    "CASES",
    "decision_case",
    "decision_cases",
    "history_choice",
    "history_oracle",
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
    "wilson_interval",
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
    "EVIDENCE_BINS",
    "evidence_kept",
    "with_evidence_kept",
    "slices_by_method",
    "worst_examples",
    "provider_mapping",
    "rename_providers",
    "rename_test_set",
]
