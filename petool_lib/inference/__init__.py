"""Inference: predictors (a local HF model in ``generate`` / grammar-``constrained`` / candidate-``rank`` mode, or an
OpenAI-compatible endpoint) behind one contract, the token grammar of a tool call, the resumable prediction
cache, and the evaluation configuration.

- :class:`Predictor` (``base``): the contract; :class:`HFPredictor` (``hf``) and :class:`OpenAIPredictor`
  (``openai_client``) implement it; :func:`make_predictor` builds one by kind.
- :class:`EvalConfig` / :class:`DecodeConfig` (``config``): modes, decoding bounds, prompt budget, context policy.
- :func:`predict` (one test set, one mode), :func:`predict_sets` (every set x mode into a run folder, unscored).

CLI: ``python -m petool_lib predict``. Importing this package imports torch."""

from __future__ import annotations

from .config import (  # noqa: F401
    MODES,
    CONTEXTS,
    GENERATION_RESERVE,
    PROFILE_KEYS,
    DecodeConfig,
    EvalConfig,
    parse_modes,
)
from .base import (  # noqa: F401
    Predictor,
)
from .grammar import (  # noqa: F401
    GrammarError,
    VocabIndex,
    ToolCallGrammar,
    ToolSpec,
    build_vocab_index,
    vocab_index,
    token_texts,
    string_safe,
    tool_keys,
    name_text,
    head_text,
    after_value_text,
)
from .cache import (  # noqa: F401
    PredictionCache,
    cache_key,
    digest,
    model_fingerprint,
    adapter_hash,
)
from .hf import (  # noqa: F401
    CONTEXT_MARGIN,
    HFPredictor,
    ToolCallLogitsProcessor,
    common_prefix,
)
from .openai_client import (  # noqa: F401
    MalformedReply,
    OpenAIPredictor,
)
from .predictions import (  # noqa: F401
    PREDICTORS,
    make_predictor,
    default_cache_path,
    predict,
    write_rows,
    speed_summary,
    predict_sets,
)

__all__ = [
    "MODES",
    "CONTEXTS",
    "GENERATION_RESERVE",
    "PROFILE_KEYS",
    "DecodeConfig",
    "EvalConfig",
    "parse_modes",
    "Predictor",
    "GrammarError",
    "VocabIndex",
    "ToolCallGrammar",
    "ToolSpec",
    "build_vocab_index",
    "vocab_index",
    "token_texts",
    "string_safe",
    "tool_keys",
    "name_text",
    "head_text",
    "after_value_text",
    "PredictionCache",
    "cache_key",
    "digest",
    "model_fingerprint",
    "adapter_hash",
    "CONTEXT_MARGIN",
    "HFPredictor",
    "ToolCallLogitsProcessor",
    "common_prefix",
    "MalformedReply",
    "OpenAIPredictor",
    "PREDICTORS",
    "make_predictor",
    "default_cache_path",
    "predict",
    "write_rows",
    "speed_summary",
    "predict_sets",
]
