"""A model-free :class:`~petool_lib.inference.base.Predictor` for tests of the code around predictors.

It answers every entry with its ground-truth call (so scores are 100%), records what it was asked, and has no
tokenizer (prompts are never trimmed: the budget it receives is recorded instead).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from petool_lib.core.context import ChatPrompt, build_chat_prompt
from petool_lib.core.data import Entry
from petool_lib.inference.config import DecodeConfig


class StubPredictor:
    name = "stub"
    model_name = "stub-model"
    adapter = None
    modes = ("generate", "constrained")
    sort_by_length = False

    def __init__(self, window: int | None = None, batch_size: int = 4) -> None:
        self.window = window
        self.batch_size = batch_size
        self.budgets: list[int | None] = []
        self.contexts: list[str] = []
        self.batches: list[list[tuple[int, str]]] = []

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_name}

    def decoding_key(self, mode: str, cfg: DecodeConfig) -> dict[str, Any]:
        return cfg.key(mode)

    def prompt(self, entry: Entry, setting: str, max_prompt_tokens: int | None,
               context: str = "evidence") -> ChatPrompt:
        self.budgets.append(max_prompt_tokens)
        self.contexts.append(context)
        return build_chat_prompt(entry, setting)

    def run(self, items: Sequence[tuple[Entry, ChatPrompt]], mode: str, cfg: DecodeConfig) -> list[dict[str, Any]]:
        self.batches.append([(e.entry_id, p.setting) for e, p in items])
        return [{"response": json.dumps(e.ground_truth), "latency_s": 0.01, "new_tokens": 3} for e, _ in items]

    def default_batch_size(self, mode: str = "constrained") -> int:
        return self.batch_size

    def context_window(self) -> int | None:
        return self.window
