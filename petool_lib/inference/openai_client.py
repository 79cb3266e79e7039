"""Predictions from any OpenAI-compatible chat-completions endpoint (the real ``openai`` client).

Base URL and key come from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (or arguments). Requests run with bounded
concurrency; the client retries rate limits (429), timeouts and server errors (5xx) with exponential backoff,
honouring ``Retry-After``. A request that finally fails, or whose reply is malformed (no choices, no text), is
returned with an empty response and its error: it is scored as wrong, never dropped.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from ..core.context import ChatPrompt, build_chat_prompt
from ..core.data import Entry
from .config import DecodeConfig


class MalformedReply(RuntimeError):
    """The endpoint answered, but not with a chat completion holding text."""


class OpenAIPredictor:
    """Chat completions from an OpenAI-compatible server (a :class:`~petool_lib.inference.base.Predictor`); only the
    free ``generate`` mode is offered."""

    name = "openai"
    modes = ("generate",)
    sort_by_length = False  # requests are independent: keep the test-set order
    adapter = None
    batch_size = 16  # requests per cache flush

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 4,
        max_retries: int = 3,
        timeout: float = 60.0,
        max_tokens: int = 256,
        temperature: float = 0.0,
        tokenizer: Any = None,
    ) -> None:
        from openai import OpenAI

        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ValueError("no endpoint: set OPENAI_BASE_URL (or pass base_url)")
        self.model_name = model
        self.base_url = base_url.rstrip("/")
        self.concurrency = max(1, int(concurrency))
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.tokenizer = tokenizer  # optional: only to measure and trim prompts to a token budget
        self.client = OpenAI(base_url=self.base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                             max_retries=max_retries, timeout=timeout)

    def identity(self) -> dict[str, Any]:
        """Part of every cache key: keys and values stay as they are so existing caches stay valid."""
        tok = getattr(self.tokenizer, "name_or_path", None)
        return {"backend": "openai", "base_url": self.base_url, "model": self.model_name, "budget_tokenizer": tok}

    def decoding_key(self, mode: str, cfg: DecodeConfig | None = None) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "temperature": self.temperature}

    def default_batch_size(self) -> int:
        return self.batch_size

    def context_window(self) -> int | None:
        return None  # an endpoint does not say

    def prompt(self, entry: Entry, setting: str, max_prompt_tokens: int | None,
               context: str = "evidence") -> ChatPrompt:
        cp = build_chat_prompt(entry, setting, self.tokenizer, max_prompt_tokens, context)
        cp.input_ids = None  # the endpoint gets messages; the cache key hashes them
        return cp

    def complete(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """One request: ``{"response", "error", "latency_s"}``; never raises."""
        t0 = time.perf_counter()
        try:
            reply = self.client.chat.completions.create(
                model=self.model_name, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens,
            )
            choices = getattr(reply, "choices", None)
            if not choices:
                raise MalformedReply(f"reply without choices: {str(reply)[:200]}")
            content = getattr(getattr(choices[0], "message", None), "content", None)
            if not isinstance(content, str):
                raise MalformedReply(f"reply without text content: {str(choices[0])[:200]}")
            return {"response": content, "error": None, "latency_s": round(time.perf_counter() - t0, 4)}
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on its row
            msg = f"{type(exc).__name__}: {exc}"
            return {"response": "", "error": msg[:500], "latency_s": round(time.perf_counter() - t0, 4)}

    def run(self, items: Sequence[tuple[Entry, ChatPrompt]], mode: str,
            cfg: DecodeConfig | None = None) -> list[dict[str, Any]]:
        if mode not in self.modes:
            raise ValueError(f"the openai predictor supports only mode 'generate', not {mode!r}")
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(lambda it: self.complete(it[1].messages), items))
