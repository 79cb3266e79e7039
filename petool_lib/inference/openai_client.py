"""Predictions from any OpenAI-compatible chat-completions endpoint (the real ``openai`` client).

Base URL and key come from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` (or arguments). Requests run with bounded
concurrency; the client retries rate limits (429), timeouts and server errors (5xx) with exponential backoff,
honouring ``Retry-After``. A request that finally fails, or whose reply is malformed (no choices, no text), is
returned with an empty response and its error: it is scored as wrong, never dropped.

``response_format`` asks the server for structured output, so that a reply is a call rather than prose: a JSON
object ``{"tool_name": <one of the entry's candidates>, "parameters": {...}}`` (:func:`call_schema`). ``none``
(default) sends no ``response_format``; ``json_schema`` sends OpenAI's ``{"type": "json_schema", "json_schema":
{"name": "tool_call", "schema": ...}}`` (OpenAI, vLLM, llama.cpp's ``llama-server``, Ollama's ``/v1``);
``json_object`` sends ``{"type": "json_object", "schema": ...}``, the form llama-cpp-python's server turns into a
grammar (its 0.3.x server rejects ``json_schema`` with HTTP 422; a server that ignores ``schema`` still returns
JSON).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from ..core.context import ChatPrompt, build_chat_prompt
from ..core.data import Entry
from .config import DecodeConfig

RESPONSE_FORMATS = ("none", "json_object", "json_schema")


def call_schema(entry: Entry) -> dict[str, Any]:
    """The JSON schema of one call for ``entry``: ``tool_name`` one of its candidates (an enum of their names, in
    order, duplicates removed), ``parameters`` an object."""
    names = list(dict.fromkeys(entry.candidate_names))
    return {
        "type": "object",
        "properties": {
            "tool_name": {"type": "string", "enum": names},
            "parameters": {"type": "object"},
        },
        "required": ["tool_name", "parameters"],
        "additionalProperties": False,
    }


def response_format_body(kind: str, entry: Entry) -> dict[str, Any] | None:
    """The request's ``response_format`` for ``kind`` (:data:`RESPONSE_FORMATS`); None for ``none``."""
    if kind == "none":
        return None
    if kind == "json_object":
        return {"type": "json_object", "schema": call_schema(entry)}
    if kind == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": call_schema(entry)}}
    raise ValueError(f"unknown response format {kind!r}; expected one of {RESPONSE_FORMATS}")


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
        response_format: str = "none",
    ) -> None:
        from openai import OpenAI

        if response_format not in RESPONSE_FORMATS:
            raise ValueError(f"unknown response format {response_format!r}; expected one of {RESPONSE_FORMATS}")

        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ValueError("no endpoint: set OPENAI_BASE_URL (or pass base_url)")
        self.model_name = model
        self.base_url = base_url.rstrip("/")
        self.concurrency = max(1, int(concurrency))
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.response_format = response_format
        self.tokenizer = tokenizer  # optional: only to measure and trim prompts to a token budget
        self.client = OpenAI(base_url=self.base_url, api_key=api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY",
                             max_retries=max_retries, timeout=timeout)

    def identity(self) -> dict[str, Any]:
        """Part of every cache key: keys and values stay as they are so existing caches stay valid."""
        tok = getattr(self.tokenizer, "name_or_path", None)
        return {"backend": "openai", "base_url": self.base_url, "model": self.model_name, "budget_tokenizer": tok}

    def decoding_key(self, mode: str, cfg: DecodeConfig | None = None) -> dict[str, Any]:
        key: dict[str, Any] = {"max_tokens": self.max_tokens, "temperature": self.temperature}
        if self.response_format != "none":  # absent for none: caches written before the option stay valid
            key["response_format"] = self.response_format  # the schema follows from the candidates (in the prompt)
        return key

    def default_batch_size(self, mode: str = "generate") -> int:
        return self.batch_size

    def context_window(self) -> int | None:
        return None  # an endpoint does not say

    def prompt(self, entry: Entry, setting: str, max_prompt_tokens: int | None,
               context: str = "evidence") -> ChatPrompt:
        cp = build_chat_prompt(entry, setting, self.tokenizer, max_prompt_tokens, context)
        cp.input_ids = None  # the endpoint gets messages; the cache key hashes them
        return cp

    def complete(self, messages: list[dict[str, str]],
                 response_format: dict[str, Any] | None = None) -> dict[str, Any]:
        """One request (with ``response_format`` when given): ``{"response", "error", "latency_s"}``; never raises."""
        t0 = time.perf_counter()
        extra: dict[str, Any] = {"response_format": response_format} if response_format is not None else {}
        try:
            reply = self.client.chat.completions.create(
                model=self.model_name, messages=messages, temperature=self.temperature, max_tokens=self.max_tokens,
                **extra,
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
            return list(pool.map(
                lambda it: self.complete(it[1].messages, response_format_body(self.response_format, it[0])), items))
