"""The predictor contract: what :func:`~petool_lib.inference.predictions.predict` needs from a model (in the
manner of BFCL's model handlers).

A predictor turns (entry, setting) pairs into tool-call responses. Two implement it: a local transformers model
(:class:`~petool_lib.inference.hf.HFPredictor`, every mode) and an OpenAI-compatible endpoint
(:class:`~petool_lib.inference.openai_client.OpenAIPredictor`, ``generate`` only). ``predict`` owns everything
around them (work order, batching, the resumable cache, the rows); a predictor only builds prompts and runs one
batch. Any class with these members works (structural typing); ``isinstance(x, Predictor)`` checks their presence.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

from ..core.context import ChatPrompt
from ..core.data import Entry
from .config import DecodeConfig


@runtime_checkable
class Predictor(Protocol):
    """A model that predicts tool calls.

    - ``name``: the predictor kind (``hf``, ``openai``); written on every row (field ``backend``, kept for the
      existing prediction files and caches).
    - ``model_name`` / ``adapter``: what rows call the model (labels only: the cache uses :meth:`identity`).
    - ``modes``: the decoding modes it supports (a subset of :data:`~petool_lib.inference.config.MODES`).
    - ``sort_by_length``: batch the work list in prompt-length order (less padding) instead of test-set order.
    """

    name: str
    model_name: str
    adapter: str | None
    modes: tuple[str, ...]
    sort_by_length: bool

    def identity(self) -> dict[str, Any]:
        """What predictions depend on besides the prompt and decoding (model fingerprint, adapter hash, dtype ...):
        part of the prediction-cache key, so its contents must stay stable for existing caches to stay valid."""
        ...

    def decoding_key(self, mode: str, cfg: DecodeConfig) -> dict[str, Any]:
        """The decoding parameters that change this predictor's output in ``mode`` (part of the cache key)."""
        ...

    def prompt(self, entry: Entry, setting: str, max_prompt_tokens: int | None,
               context: str = "evidence") -> ChatPrompt:
        """The request for ``entry`` under ``setting``, fitted to ``max_prompt_tokens`` when it can measure it, by
        the ``context`` policy (:data:`petool_lib.core.context.CONTEXT_MODES`)."""
        ...

    def run(self, items: Sequence[tuple[Entry, ChatPrompt]], mode: str, cfg: DecodeConfig) -> list[dict[str, Any]]:
        """Predict one batch: per item ``{"response", "latency_s", "error"?, ...extras}``, in order, never raising
        for one item's failure (a failed item has an empty response and its ``error``)."""
        ...

    def default_batch_size(self, mode: str = "constrained") -> int:
        """Items per :meth:`run` call in ``mode`` (and per cache flush) when the caller does not say."""
        ...

    def context_window(self) -> int | None:
        """The longest prompt + answer the model reads, in tokens; ``None`` when unknown."""
        ...
