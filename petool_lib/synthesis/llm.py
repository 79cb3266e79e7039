"""The synthesis LLMs behind one interface (:class:`SynthLLM`): ``offline`` (:class:`OfflineLLM`: templates, no
model), ``openai`` (:class:`OpenAILLM`: any OpenAI-compatible server) and ``hf`` (:class:`HFLLM`: a local chat model
through transformers). Made by name with :func:`make_llm` (names in :data:`LLMS`).

An LLM answers a batch of :class:`ChatRequest` with one reply string per request, in order (``None`` from the
offline LLM: the caller then uses its template). The model LLMs

- cache every reply on disk keyed by (LLM name, model, messages, decoding parameters), so a rerun is free and gives
  the same text;
- count calls, cache hits, retries and tokens (:class:`LLMStats`);
- can estimate the cost of a batch before spending (:meth:`SynthLLM.plan`: calls not yet cached and tokens, with
  ~4 characters per prompt token plus ``max_tokens`` per reply).

``openai`` leaves retries to the SDK (``max_retries``: rate limits, 5xx replies, timeouts and connection errors,
exponential backoff with jitter, ``Retry-After`` honoured) and runs at most ``concurrency`` requests at a time. Its
first uncached request of a run is a probe sent without retries: when the endpoint cannot be reached (connection
refused, DNS failure) the run stops at once with :class:`LLMUnavailable` naming the base URL, or, with
``allow_fallback``, every request of the run fails at once (counted as ``connection_error``) and the callers use
their templates. A request that fails for good is counted by reason in :attr:`LLMStats.failure_reasons`.

Replies are validated by the caller (:func:`parse_json_reply`); an invalid reply is asked again once with an
``attempt`` marker in the cache key, then the caller falls back to the offline template and counts it. A failed
request is not asked again and is counted as ``failed``, not as invalid JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

LLMS = ("offline", "openai", "hf")
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_HF_MODEL = "smollm2"
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make: ``messages`` plus the item it is for (``key``, for reports)."""

    key: str
    messages: tuple[tuple[str, str], ...]
    attempt: int = 0

    @classmethod
    def of(cls, key: str, system: str, user: str, attempt: int = 0) -> "ChatRequest":
        return cls(key=key, messages=(("system", system), ("user", user)), attempt=attempt)

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in self.messages]


@dataclass
class LLMStats:
    """What an LLM did: requests made to the model, cache hits, retries, failures and tokens."""

    requests: int = 0  # asked for by the callers (cached or not)
    api_calls: int = 0  # answered by the model (not from the cache)
    cache_hits: int = 0
    retries: int = 0  # transient errors asked again (openai; as the SDK reports them)
    failures: int = 0  # given up on: the caller falls back to its template
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failure_reasons: dict[str, int] = field(default_factory=dict)  # failures by reason (connection_error, http_500 ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LLMUnavailable(RuntimeError):
    """A model LLM that cannot be used at all (unreachable endpoint, or no request answered); the run stops unless
    fallback to the offline templates is allowed."""


class DiskCache:
    """One JSON file per reply under ``root/<first two hex>/<sha256>.json``; thread-safe writes (atomic rename)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @staticmethod
    def key(payload: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f"{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        tmp.replace(p)


def default_cache_dir() -> Path:
    """``$PETOOL_CACHE/llm`` (default ``~/.cache/petool/llm``)."""
    return Path(os.environ.get("PETOOL_CACHE", Path.home() / ".cache" / "petool")) / "llm"


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def parse_json_reply(text: str | None) -> Any:
    """The first JSON object in a reply (plain, fenced, or embedded in prose); None when there is none."""
    if not text:
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    dec = json.JSONDecoder()
    for cand in candidates:
        for i, ch in enumerate(cand):
            if ch == "{":
                try:
                    obj, _ = dec.raw_decode(cand[i:])
                except json.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    return obj
    return None


class SynthLLM:
    """Base class of the synthesis LLMs: the reply cache, the statistics, the plan; a subclass with a model
    implements :meth:`_generate`."""

    name = ""
    is_model = True

    def __init__(self, model: str = "", temperature: float = 0.0, max_tokens: int = 256,
                 cache_dir: str | Path | None = None, progress: bool = True) -> None:
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.cache = DiskCache(cache_dir or default_cache_dir())
        self.progress = progress
        self.stats = LLMStats()

    def decoding(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def cache_key(self, req: ChatRequest) -> str:
        # the payload's field stays "backend" so the reply caches written before the rename stay valid
        return DiskCache.key({"backend": self.name, "model": self.model, "messages": req.message_dicts(),
                              "decoding": self.decoding(), "attempt": req.attempt})

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.model, **(self.decoding() if self.is_model else {})}

    def plan(self, requests: Sequence[ChatRequest]) -> dict[str, int]:
        """Expected calls (not yet cached) and tokens for a batch, without calling anything."""
        if not self.is_model:
            return {"requests": len(requests), "uncached_calls": 0, "est_prompt_tokens": 0, "est_completion_tokens": 0}
        todo = [r for r in requests if self.cache.get(self.cache_key(r)) is None]
        chars = sum(len(c) for r in todo for _, c in r.messages)
        return {"requests": len(requests), "uncached_calls": len(todo),
                "est_prompt_tokens": chars // CHARS_PER_TOKEN + 4 * len(todo),
                "est_completion_tokens": self.max_tokens * len(todo)}

    def chat(self, requests: Sequence[ChatRequest], desc: str = "llm") -> list[str | None]:
        """One reply per request (``None`` when the LLM has no model or the call failed for good)."""
        self.stats.requests += len(requests)
        if not self.is_model:
            return [None] * len(requests)
        out: list[str | None] = [None] * len(requests)
        todo: list[int] = []
        for i, r in enumerate(requests):
            hit = self.cache.get(self.cache_key(r))
            if hit is not None:
                out[i] = hit.get("text")
                self.stats.cache_hits += 1
            else:
                todo.append(i)
        if todo:
            results = self._generate([requests[i] for i in todo], desc)
            for i, res in zip(todo, results):
                if res is None:
                    self.stats.failures += 1
                    continue
                text, usage = res
                self.stats.api_calls += 1
                self.stats.prompt_tokens += usage.get("prompt_tokens", 0)
                self.stats.completion_tokens += usage.get("completion_tokens", 0)
                self.cache.put(self.cache_key(requests[i]), {"text": text, "usage": usage, "key": requests[i].key})
                out[i] = text
        return out

    def _generate(self, requests: list[ChatRequest], desc: str) -> list[tuple[str, dict[str, int]] | None]:
        raise NotImplementedError


class OfflineLLM(SynthLLM):
    """No model: every reply is ``None``, so callers use their templates (deterministic, free)."""

    name = "offline"
    is_model = False


class OpenAILLM(SynthLLM):
    """The official ``openai`` client against any OpenAI-compatible server (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``).

    ``max_retries`` and ``timeout`` go to the SDK client. ``allow_fallback``: an unreachable endpoint makes every
    request fail (and the callers fall back) instead of raising :class:`LLMUnavailable`.
    """

    name = "openai"

    def __init__(self, model: str = DEFAULT_OPENAI_MODEL, temperature: float = 0.0, max_tokens: int = 256,
                 cache_dir: str | Path | None = None, progress: bool = True, concurrency: int = 4,
                 max_retries: int = 5, timeout: float = 60.0, base_url: str | None = None,
                 api_key: str | None = None, allow_fallback: bool = False) -> None:
        super().__init__(model, temperature, max_tokens, cache_dir, progress)
        self.concurrency = max(1, int(concurrency))
        self.max_retries = max(0, int(max_retries))
        self.timeout = timeout
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.allow_fallback = allow_fallback
        self.unreachable: str | None = None  # why the endpoint could not be reached (allow_fallback only)
        self._answered = False  # the endpoint has answered a request of this run
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        if self._client is None:
            import openai

            if not self.api_key:
                raise RuntimeError("llm openai needs OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI server)")
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, max_retries=self.max_retries,
                                         timeout=self.timeout)
        return self._client

    def endpoint(self) -> str:
        """The base URL requests go to (for messages)."""
        return str(self.client().base_url).rstrip("/")

    def _count(self, retries: int = 0, failure: str | None = None) -> None:
        with self._lock:
            self.stats.retries += retries
            if failure is not None:
                self.stats.failure_reasons[failure] = self.stats.failure_reasons.get(failure, 0) + 1

    @staticmethod
    def failure_reason(exc: Exception) -> str:
        """A short label for a failed request: timeout | connection_error | rate_limited | http_<status> | <type>."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return "timeout"
        if isinstance(exc, openai.APIConnectionError):
            return "connection_error"
        if isinstance(exc, openai.RateLimitError):
            return "rate_limited"
        if isinstance(exc, openai.APIStatusError):
            return f"http_{exc.status_code}"
        return type(exc).__name__

    @staticmethod
    def _retryable(exc: Exception) -> bool:
        import openai

        return isinstance(exc, (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)) or (
            isinstance(exc, openai.APIStatusError) and exc.status_code in (408, 409))

    def _create(self, client: Any, req: ChatRequest) -> tuple[str, dict[str, int]]:
        raw = client.chat.completions.with_raw_response.create(
            model=self.model, messages=req.message_dicts(), temperature=self.temperature, max_tokens=self.max_tokens)
        resp = raw.parse()
        self._count(retries=int(getattr(raw, "retries_taken", 0) or 0))
        self._answered = True
        text = resp.choices[0].message.content or ""
        usage = {"prompt_tokens": int(getattr(resp.usage, "prompt_tokens", 0) or 0),
                 "completion_tokens": int(getattr(resp.usage, "completion_tokens", 0) or 0)}
        return text, usage

    def _one(self, req: ChatRequest, max_retries: int | None = None) -> tuple[str, dict[str, int]] | None:
        """One request with the SDK's retries (``max_retries`` overrides the client's); None when it failed."""
        import openai

        if self.unreachable is not None:
            self._count(failure="connection_error")
            return None
        client = self.client()
        if max_retries is not None:
            client = client.with_options(max_retries=max_retries)
        try:
            return self._create(client, req)
        except openai.APIError as exc:
            n = client.max_retries if self._retryable(exc) else 0
            self._count(retries=n, failure=self.failure_reason(exc))
            tqdm.write(f"openai: giving up on {req.key}: {type(exc).__name__}: {str(exc)[:120]}")
            return None

    def _probe(self, req: ChatRequest) -> tuple[str, dict[str, int]] | None:
        """The first request of a run, without retries: a refused connection or failed DNS lookup stops the run
        (:class:`LLMUnavailable`) or, with ``allow_fallback``, marks the endpoint unreachable; any other error is
        retried as usual (the probe counts as the first try)."""
        import openai

        err: Exception
        try:
            return self._create(self.client().with_options(max_retries=0), req)
        except openai.APIConnectionError as exc:
            if not isinstance(exc, openai.APITimeoutError):  # a timeout is slow, not absent: retried below
                return self._on_unreachable(exc)
            err = exc
        except openai.APIError as exc:
            err = exc
        if not self._retryable(err) or self.max_retries == 0:
            self._count(failure=self.failure_reason(err))
            tqdm.write(f"openai: giving up on {req.key}: {type(err).__name__}: {str(err)[:120]}")
            return None
        self._count(retries=1)
        return self._one(req, max_retries=self.max_retries - 1)

    def _on_unreachable(self, exc: Exception) -> None:
        """The probe could not connect: raise :class:`LLMUnavailable`, or (``allow_fallback``) remember why."""
        cause = exc.__cause__ or exc
        why = f"cannot connect to {self.endpoint()} ({type(cause).__name__}: {str(cause)[:160]})"
        if not self.allow_fallback:
            raise LLMUnavailable(f"llm openai: {why}; start the server or fix OPENAI_BASE_URL, "
                                 "or pass --allow-fallback to use the offline templates") from None
        self.unreachable = why
        tqdm.write(f"warning: llm openai: {why}; every model request falls back to the offline templates "
                   "(--allow-fallback)")
        self._count(failure="connection_error")
        return None

    def _generate(self, requests: list[ChatRequest], desc: str) -> list[tuple[str, dict[str, int]] | None]:
        first: list[tuple[str, dict[str, int]] | None] = []
        if not self._answered and self.unreachable is None and requests:
            first, requests = [self._probe(requests[0])], requests[1:]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            rest = list(tqdm(pool.map(self._one, requests), total=len(requests), desc=desc, disable=not self.progress))
        return first + rest


class HFLLM(SynthLLM):
    """A local chat model through transformers (greedy decoding): ``smollm2`` (embedded), ``tiny``, or any HF path."""

    name = "hf"

    def __init__(self, model: str = DEFAULT_HF_MODEL, temperature: float = 0.0, max_tokens: int = 128,
                 cache_dir: str | Path | None = None, progress: bool = True, batch_size: int = 8) -> None:
        super().__init__(model, temperature, max_tokens, cache_dir, progress)
        self.batch_size = batch_size
        self._loaded: tuple[Any, Any] | None = None

    def decoding(self) -> dict[str, Any]:
        return {"do_sample": False, "max_new_tokens": self.max_tokens}

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from ..core.models import load_model

            model, tok = load_model(self.model, device="cpu")
            tok.padding_side = "left"
            self._loaded = (model, tok)
        return self._loaded

    def _generate(self, requests: list[ChatRequest], desc: str) -> list[tuple[str, dict[str, int]] | None]:
        import torch

        model, tok = self._load()
        out: list[tuple[str, dict[str, int]] | None] = []
        for b in tqdm(range(0, len(requests), self.batch_size), desc=desc, disable=not self.progress):
            batch = requests[b:b + self.batch_size]
            texts = [tok.apply_chat_template(r.message_dicts(), tokenize=False, add_generation_prompt=True) for r in batch]
            enc = tok(texts, return_tensors="pt", padding=True)
            with torch.no_grad():
                gen = model.generate(**enc, do_sample=False, max_new_tokens=self.max_tokens, pad_token_id=tok.pad_token_id)
            new = gen[:, enc["input_ids"].shape[1]:]
            for k in range(len(batch)):
                n_prompt = int(enc["attention_mask"][k].sum())
                ids = new[k]
                n_new = int((ids != tok.pad_token_id).sum()) if tok.pad_token_id is not None else int(ids.numel())
                out.append((tok.decode(ids, skip_special_tokens=True),
                            {"prompt_tokens": n_prompt, "completion_tokens": n_new}))
        return out


def make_llm(name: str, model: str | None = None, **kwargs: Any) -> SynthLLM:
    """``offline`` | ``openai`` | ``hf`` (``model`` defaults: gpt-4o-mini, smollm2)."""
    if name == "offline":
        return OfflineLLM(model="", **{k: v for k, v in kwargs.items() if k in ("cache_dir", "progress")})
    if name == "openai":
        return OpenAILLM(model=model or DEFAULT_OPENAI_MODEL, **kwargs)
    if name == "hf":
        allowed = ("temperature", "max_tokens", "cache_dir", "progress", "batch_size")
        return HFLLM(model=model or DEFAULT_HF_MODEL, **{k: v for k, v in kwargs.items() if k in allowed})
    raise ValueError(f"unknown synthesis LLM {name!r}; expected one of {LLMS}")


def ask_json(
    llm: SynthLLM,
    requests: Sequence[ChatRequest],
    validate: Callable[[Any, int], Any],
    desc: str = "llm",
    json_retries: int = 1,
) -> tuple[list[Any], dict[str, int]]:
    """Ask for JSON replies; ``validate(obj, index)`` returns the cleaned value or None (invalid).

    Invalid replies are asked again (up to ``json_retries`` times, a new cache key each time); a failed request
    (no reply: see :attr:`LLMStats.failure_reasons`) is counted as ``failed`` and not asked again. Returns the valid
    values (None where the caller must fall back) and counts ``{"valid", "invalid_json", "invalid_content",
    "failed", "reasked", "fallback"}``.
    """
    counts = {"valid": 0, "invalid_json": 0, "invalid_content": 0, "failed": 0, "reasked": 0, "fallback": 0}
    values: list[Any] = [None] * len(requests)
    pending = list(range(len(requests)))
    current = list(requests)
    if not llm.is_model:
        counts["fallback"] = 0
        return values, counts
    for attempt in range(json_retries + 1):
        if not pending:
            break
        replies = llm.chat([current[i] for i in pending], desc=desc if attempt == 0 else f"{desc} (re-ask)")
        still = []
        for i, text in zip(pending, replies):
            if text is None:  # the request failed (already retried by the LLM): fall back, do not re-ask
                counts["failed"] += 1
                continue
            obj = parse_json_reply(text)
            value = validate(obj, i) if obj is not None else None
            if value is not None:
                values[i] = value
                counts["valid"] += 1
                continue
            counts["invalid_json" if obj is None else "invalid_content"] += 1
            if attempt < json_retries:
                r = current[i]
                current[i] = ChatRequest(key=r.key, messages=r.messages, attempt=attempt + 1)
                counts["reasked"] += 1
            still.append(i)
        pending = still
    counts["fallback"] = len(pending) + counts["failed"]
    return values, counts
