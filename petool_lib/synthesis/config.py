"""Every knob of a synthesis run (:class:`SynthConfig`) and its validation."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .grouping import DEFAULT_MAX_SIZE, DEFAULT_THRESHOLD
from .histories import PROMPT_HISTORY_LIMIT
from .holdout import HOLDOUTS
from .llm import LLMS

# run-local settings: where files go and how the run reports progress; they never change what is synthesized
NOT_RECORDED = ("out", "cache_dir", "progress", "dry_run", "test_set", "overwrite")


@dataclass
class SynthConfig:
    """Every knob of a synthesis run (recorded in the manifest, except the output/cache paths and progress).

    ``llm`` is the synthesis LLM (:data:`~petool_lib.synthesis.llm.LLMS`): ``offline`` | ``openai`` | ``hf``.
    ``allow_fallback``: a model LLM that cannot be reached (or answers nothing) is an error unless this is set; with
    it the run goes on with the offline templates and the manifest counts what fell back and why. ``overwrite``: a
    non-empty ``out`` that is not a previous synthesis run is used anyway (only the files synthesis writes are
    replaced). ``lf_cutoff_len`` / ``lf_tokenizer``: the LLaMA-Factory export's prompts are fitted to this many
    tokens (prompt + answer, counted with this tokenizer: ``smollm2`` | ``tiny`` | HF id / path) by the context
    builder; either None: exported unfitted (the manifest's ``llamafactory.checked`` is false).
    """

    tools: str = "sample"
    out: str = "outputs/synth"
    llm: str = "offline"
    model: str | None = None
    seed: int = 0
    train: int = 3000
    test: int = 100
    holdout: str = "strict"
    test_set: str | None = None
    n_candidates: int = 10
    group_threshold: float = DEFAULT_THRESHOLD
    max_group_size: int = DEFAULT_MAX_SIZE
    test_group_fraction: float = 0.2
    instructions_per_api: int = 3
    noise: float = 0.3
    concentration: float = 0.5
    history_limit: int = PROMPT_HISTORY_LIMIT
    embedding: str = "auto"
    llm_limit: int | None = None
    llm_max_tokens: int | None = None
    concurrency: int = 4
    cache_dir: str | None = None
    progress: bool = True
    dry_run: bool = False
    allow_fallback: bool = False
    overwrite: bool = False
    lf_cutoff_len: int | None = 4096
    lf_tokenizer: str | None = "smollm2"

    def recorded(self) -> dict[str, Any]:
        """The parameters the manifest records: every field but :data:`NOT_RECORDED`."""
        d = asdict(self)
        for k in NOT_RECORDED:
            d.pop(k)
        return d

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        if self.holdout not in HOLDOUTS:
            raise ValueError(f"unknown holdout {self.holdout!r}; expected one of {HOLDOUTS}")
        if self.llm not in LLMS:
            raise ValueError(f"unknown llm {self.llm!r}; expected one of {LLMS}")
        if self.train < 0 or self.test < 0:
            raise ValueError("--train and --test must be >= 0")
        for name, value, low in (("seed", self.seed, 0), ("instructions_per_api", self.instructions_per_api, 1),
                                 ("concurrency", self.concurrency, 1), ("llm_limit", self.llm_limit, 0),
                                 ("llm_max_tokens", self.llm_max_tokens, 1), ("lf_cutoff_len", self.lf_cutoff_len, 1)):
            if value is not None and value < low:
                raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
        if not 0.0 <= self.noise < float("inf"):
            raise ValueError(f"--noise must be a finite number >= 0, got {self.noise}")
        if not 0.0 <= self.group_threshold <= 1.0:
            raise ValueError(f"--group-threshold must be in [0, 1], got {self.group_threshold}")
