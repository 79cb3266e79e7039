"""Synthesis: PEToolBench-style training and test data from a tool corpus (notebooks 01-02).

Tool catalog -> tool understanding -> functional groups -> holdout split -> users' preferences -> histories ->
queries and ground-truth calls -> SFT / DPO / test files. :func:`prepare` runs the per-tool steps (notebook 01),
:func:`synthesize` the rest and writes the files (notebook 02); both take a :class:`SynthConfig`. The synthesis LLM
(``SynthConfig.llm``: ``offline`` | ``openai`` | ``hf``) is a :class:`SynthLLM` made by :func:`make_llm`.

CLI: ``python -m petool_lib synthesize`` (:mod:`petool_lib.synthesis.cli`). Figures: :mod:`.plots`.
"""

from __future__ import annotations

from . import plots  # noqa: F401
from .catalog import Api, Catalog, load_catalog  # noqa: F401
from .config import SynthConfig  # noqa: F401
from .examples import Example, Synthesizer, map_parameters  # noqa: F401
from .exports import dpo_rows, file_hashes, sft_rows  # noqa: F401
from .grouping import Group  # noqa: F401
from .histories import group_size_counts, measure_structure, structure_table  # noqa: F401
from .holdout import (  # noqa: F401
    HOLDOUTS,
    OfficialReference,
    leakage_report,
    leakage_table,
    load_reference,
    split_groups,
)
from .instructions import Instruction  # noqa: F401
from .llm import (  # noqa: F401
    LLMS,
    ChatRequest,
    HFLLM,
    LLMStats,
    OfflineLLM,
    OpenAILLM,
    SynthLLM,
    ask_json,
    make_llm,
    parse_json_reply,
)
from .pipeline import (  # noqa: F401
    DATA_FILES,
    TRAIN_ID_OFFSET,
    Preparation,
    ensure_data,
    holdout_split,
    plan_llm,
    preparation_metrics,
    preparation_summary,
    prepare,
    synthesize,
    understanding_sample,
    write_tool_files,
)
from .preferences import PreferenceModel, User  # noqa: F401
from .understanding import ATTRIBUTES, Understanding  # noqa: F401

__all__ = [
    # configuration and the two entry points (notebooks 01 and 02)
    "SynthConfig",
    "prepare",
    "Preparation",
    "synthesize",
    "ensure_data",
    "DATA_FILES",
    "plan_llm",
    "write_tool_files",
    "TRAIN_ID_OFFSET",
    # notebook views
    "preparation_summary",
    "preparation_metrics",
    "understanding_sample",
    "holdout_split",
    "group_size_counts",
    "measure_structure",
    "structure_table",
    "leakage_table",
    "plots",
    # the holdout against the official test set
    "HOLDOUTS",
    "OfficialReference",
    "load_reference",
    "split_groups",
    "leakage_report",
    # the synthesis LLMs
    "LLMS",
    "SynthLLM",
    "OfflineLLM",
    "OpenAILLM",
    "HFLLM",
    "make_llm",
    "ChatRequest",
    "LLMStats",
    "ask_json",
    "parse_json_reply",
    # the main types
    "Api",
    "Catalog",
    "load_catalog",
    "Understanding",
    "ATTRIBUTES",
    "Group",
    "User",
    "PreferenceModel",
    "Instruction",
    "Example",
    "Synthesizer",
    "map_parameters",
    "sft_rows",
    "dpo_rows",
    "file_hashes",
]
