"""Hugging Face decoding of tool calls: free ``generate``, grammar-``constrained`` and candidate ``rank`` modes.

- ``generate``: batched (left padding), greedy, stops at the end-of-turn token, at most ``max_new_tokens``.
- ``constrained``: the same batched greedy ``model.generate`` with :class:`ToolCallLogitsProcessor`, which keeps every
  row inside the entry's call grammar (one of its candidate names, that tool's parameter names, JSON values):
  invalid-format and hallucinated tools are impossible by construction. One prompt at a time (the CPU default), a
  loop feeds each forced run of tokens in one forward instead.
- ``rank``: one prefill of the shared prompt (plus the token prefix shared by every candidate), then the
  log-likelihood of each candidate's ``{"tool_name": "NAME"`` continuation on top of that KV cache (all candidates
  in one forward over their token trie, with a tree attention mask), the best candidate chosen, and its parameters
  generated as in ``constrained`` from the same cache.

``DecodeConfig.grammar`` chooses who enforces the call grammar in ``constrained`` and in ``rank``'s parameters: our
token state machine (``builtin``) or xgrammar (``xgrammar``, :mod:`.xgrammar_call`). The candidate trie of ``rank``
is always ours: scoring every candidate name in one tree-masked forward is not something a grammar library does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList
from transformers.cache_utils import DynamicLayer

from ..core.context import ChatPrompt, build_chat_prompt, end_of_turn_ids
from ..core.data import Entry
from ..core.models import inference_dtype, load_model, resolve_model
from .attention import BLOCK
from .attention import register as register_blocked_attention
from .cache import adapter_hash, model_fingerprint
from .config import MODES, RANK_BATCH, RANK_WINDOW, DecodeConfig, parse_device_map
from .grammar import ToolCallGrammar, name_text, vocab_index

CONTEXT_MARGIN = 64  # tokens kept free for the answer when checking a prompt against the context window


class ToolCallLogitsProcessor(LogitsProcessor):
    """Masks each batch row's logits to the tokens its call grammar allows next (a :class:`ToolCallGrammar` or an
    :class:`~petool_lib.inference.xgrammar_call.XGrammarToolCall`: both have ``advance`` and ``allowed``)."""

    def __init__(self, grammars: Sequence[Any], prompt_len: int) -> None:
        self.grammars = list(grammars)
        self.prompt_len = prompt_len

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self.prompt_len:
            last = input_ids[:, -1].tolist()
            for g, tok in zip(self.grammars, last):
                g.advance(int(tok))
        masked = torch.full_like(scores, float("-inf"))
        for row, g in enumerate(self.grammars):
            allowed = g.allowed()
            if isinstance(allowed, torch.Tensor):
                n = min(allowed.shape[0], scores.shape[1])
                keep = torch.zeros(scores.shape[1], dtype=torch.bool, device=scores.device)
                keep[:n] = allowed[:n].to(scores.device)
                masked[row] = torch.where(keep, scores[row], masked[row])
            else:
                idx = torch.tensor(allowed, dtype=torch.long, device=scores.device)
                masked[row, idx] = scores[row, idx]
        return masked


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = seqs[0][i]
        if any(s[i] != t for s in seqs):
            return i
    return n


def load_with_device_map(model: str, adapter: str | None = None, dtype: str | None = "auto",
                         device_map: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) placed by accelerate's big-model loading (``device_map="auto"``): the layers spread over
    every visible GPU, then CPU RAM (then disk), for a model too large for one device. ``dtype`` as
    :func:`~petool_lib.core.models.inference_dtype` (bf16 when a GPU is present)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(model)
    tok = AutoTokenizer.from_pretrained(adapter or path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    weights = inference_dtype("cuda" if torch.cuda.is_available() else "cpu", dtype or "auto")
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=weights, device_map=device_map)
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
    lm.eval()
    return lm, tok


class GrowingLayer(DynamicLayer):
    """A :class:`~transformers.cache_utils.DynamicLayer` that writes new keys / values into a preallocated buffer
    with ``room`` free slots (``GROW`` more each time it fills) instead of concatenating: ``DynamicLayer`` copies the
    whole cache on every decoding step (B rows' caches of ~1,800 tokens each on every step of
    :meth:`HFPredictor._decode_rows`). ``keys`` / ``values`` are views of the filled part, so every ``DynamicLayer``
    method reads them as usual."""

    GROW = 256  # slots added when the buffer is full (a rank row decodes ~15-25 tokens on average)

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, room: int = 128) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        n = keys.shape[-2]
        self._k = keys.new_empty((*keys.shape[:-2], n + room, keys.shape[-1]))
        self._v = values.new_empty((*values.shape[:-2], n + room, values.shape[-1]))
        self._k[..., :n, :] = keys
        self._v[..., :n, :] = values
        self.keys, self.values = self._k[..., :n, :], self._v[..., :n, :]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        n, m = self.keys.shape[-2], key_states.shape[-2]
        if n + m > self._k.shape[-2]:
            room = n + m + self.GROW
            k, v = self._k, self._v
            self._k = k.new_empty((*k.shape[:-2], room, k.shape[-1]))
            self._v = v.new_empty((*v.shape[:-2], room, v.shape[-1]))
            self._k[..., :n, :] = k[..., :n, :]
            self._v[..., :n, :] = v[..., :n, :]
        self._k[..., n:n + m, :] = key_states
        self._v[..., n:n + m, :] = value_states
        self.keys, self.values = self._k[..., :n + m, :], self._v[..., :n + m, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        n = self.keys.shape[-2]
        self._k, self._v = self._k[indices], self._v[indices]
        self.keys, self.values = self._k[..., :n, :], self._v[..., :n, :]


def growing_cache(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], room: int = 128) -> DynamicCache:
    """A DynamicCache of :class:`GrowingLayer` holding ``layers`` (keys, values per decoder layer)."""
    cache = DynamicCache()
    cache.layers = [GrowingLayer(k, v, room) for k, v in layers]
    return cache


@dataclass
class _RankRow:
    """One ``rank`` prompt between choosing its tool and decoding its parameters."""

    grammar: Any
    head: list[int]  # the chosen call's forced head, ``{"tool_name": "NAME", "parameters": {...`` so far
    pending: list[int]  # tokens not yet in ``cache``
    cache: Any  # the prompt's DynamicCache (prompt + shared name prefix), None once handed to the decoder
    cache_len: int
    budget: int  # the grammar's bound on new tokens
    rank_top: list[list[Any]]
    emitted: list[int] = field(default_factory=list)
    forwards: int = 0


class HFPredictor:
    """A local transformers causal LM (optionally with a PEFT adapter) predicting tool calls (a
    :class:`~petool_lib.inference.base.Predictor`, every mode)."""

    name = "hf"
    modes = MODES
    sort_by_length = True  # batches of similar lengths: little padding

    def __init__(self, model: str, adapter: str | None = None, dtype: str | None = "auto", device: str | None = None,
                 device_map: str | None = None):
        """``dtype``: ``"auto"`` (also for ``None``) = bf16 on CUDA and on CPUs with native bf16, else fp32
        (:func:`~petool_lib.core.models.inference_dtype`); or a name such as ``"float32"``.

        ``device_map``: ``None`` / ``"none"`` (default) = the whole model on ``device`` (CUDA when present);
        ``"auto"`` = accelerate places the layers over every GPU, then CPU RAM, for large local models (inputs go
        to the device of the first layer; a LoRA adapter is then kept unmerged). Not part of the cache key: the
        placement does not change what is computed."""
        self.model_name = model
        self.adapter = adapter
        self.device_map = parse_device_map(device_map)
        if self.device_map is None:
            self.model, self.tokenizer = load_model(model, adapter=adapter, dtype=dtype or "auto", device=device)
        else:
            if device is not None:
                raise ValueError(f"device={device!r} and device_map={self.device_map!r}: give one of them")
            self.model, self.tokenizer = load_with_device_map(model, adapter, dtype, self.device_map)
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        # (not with device_map auto: weights dispatched by accelerate, possibly offloaded, stay as loaded)
        if adapter and hasattr(self.model, "merge_and_unload") and self.dtype == "float32" and self.device_map is None:
            # LoRA folded into fp32 weights: the same function, faster. Not in bf16/fp16: the small LoRA update would
            # be rounded away in the merged 8-bit-mantissa weights (measured: the cpu-profile SFT adapter fell from
            # 6/24 to 3/24 tools right when merged in bf16, 5/24 unmerged); unmerged, PEFT runs the adapter in fp32.
            self.model = self.model.merge_and_unload()
            self.model.eval()
        self.device = next(self.model.parameters()).device  # device_map auto: the first layer's (inputs go there)
        if self.device.type == "meta":  # an offloaded first layer: accelerate's hooks move the inputs themselves
            self.device = torch.device("cpu")
        cpu_bf16_sdpa = self.device.type == "cpu" and self.dtype == "bfloat16" and self._attention() == "sdpa"
        # bf16 on CPU: prefill as block-causal bf16 matrix products (2.2x faster than SDPA's flash kernel at 1.5k
        # tokens) and short forwards on a cache as plain products (inference/attention.py); the rest still SDPA.
        self.prefill_attention = self._attention(register_blocked_attention()) if cpu_bf16_sdpa else None
        self.eos_ids = end_of_turn_ids(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """What the predictions depend on besides the prompt: model fingerprint, adapter content hash, dtype.

        Part of every cache key: the keys and values (``"backend": "hf"``, ``"dtype": "torch.bfloat16"``) stay as
        they are, or every existing prediction cache would be recomputed."""
        if self._identity is None:
            self._identity = {
                "backend": "hf",
                "model": model_fingerprint(resolve_model(self.model_name)),
                "adapter": adapter_hash(self.adapter) if self.adapter else None,
                "dtype": str(next(self.model.parameters()).dtype),
            }
            if self.prefill_attention:
                self._identity["prefill_attention"] = f"{self.prefill_attention}-{BLOCK}"
        return self._identity

    def decoding_key(self, mode: str, cfg: DecodeConfig) -> dict[str, Any]:
        return cfg.key(mode)

    def default_batch_size(self, mode: str = "constrained") -> int:
        """``rank``: :data:`RANK_BATCH` (each prompt is prefilled alone; the parameter decoding is batched,
        :data:`RANK_WINDOW` rows at a time, a finished row's place taken by the next). Other modes: 1 on CPU (no
        padding: the causal fast path, and CPU gains nothing from batching long prompts), 8 on GPU."""
        if mode == "rank":
            return RANK_BATCH
        return 8 if self.device.type == "cuda" else 1

    def context_window(self) -> int | None:
        n = getattr(self.model.config, "max_position_embeddings", None)
        return int(n) if n else None

    def prompt(self, entry: Entry, setting: str, max_prompt_tokens: int | None,
               context: str = "evidence") -> ChatPrompt:
        return build_chat_prompt(entry, setting, self.tokenizer, max_prompt_tokens, context)

    # -- generation helpers ------------------------------------------------------------------------------------
    def _batch(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # left padding
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _generate(self, seqs: Sequence[Sequence[int]], max_new_tokens: int,
                  processors: list[Any] | None = None) -> list[list[int]]:
        """Batched greedy ``model.generate`` (left padding); new tokens per row, cut at the end of turn."""
        ids, mask = self._batch(seqs)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                temperature=None, top_p=None, top_k=None, eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
                logits_processor=LogitsProcessorList(processors or []),
            )
        new = out[:, ids.shape[1]:].tolist()
        result = []
        for row in new:
            cut = next((i for i, t in enumerate(row) if t in self.eos_ids), len(row))
            result.append(row[:cut])
        return result

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _grammar(self, entry: Entry, cfg: DecodeConfig, library: bool = False) -> Any:
        """The built-in call grammar, or (``library`` and ``cfg.grammar == "xgrammar"``) the same grammar compiled
        by xgrammar (:mod:`.xgrammar_call`)."""
        if library and cfg.grammar == "xgrammar":
            return self._xgrammar(entry.candidates, cfg)
        return ToolCallGrammar(entry.candidates, vocab_index(self.tokenizer), self.eos_ids,
                               cfg.max_value_chars, cfg.max_number_chars)

    def _xgrammar(self, candidates: Sequence[dict[str, Any]], cfg: DecodeConfig) -> Any:
        from .xgrammar_call import XGrammarToolCall

        width = self.model.get_output_embeddings().weight.shape[0]  # the logits' width (may exceed the tokenizer's)
        return XGrammarToolCall(candidates, self.tokenizer, width, self.eos_ids, cfg.max_value_chars,
                                cfg.max_number_chars)

    # -- modes -------------------------------------------------------------------------------------------------
    def run(self, items: Sequence[tuple[Entry, ChatPrompt]], mode: str, cfg: DecodeConfig) -> list[dict[str, Any]]:
        """Predict one batch; returns per item ``{"response", "latency_s", ...extra}``."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        window = self.context_window()
        too_long = [i for i, (_, p) in enumerate(items)
                    if window and (p.prompt_tokens or 0) > window - CONTEXT_MARGIN]
        if too_long:  # the model cannot read them: failed rows (scored wrong), never truncated or dropped
            keep = [i for i in range(len(items)) if i not in too_long]
            done = self.run([items[i] for i in keep], mode, cfg) if keep else []
            out: list[dict[str, Any]] = []
            for i in range(len(items)):
                if i in too_long:
                    n = items[i][1].prompt_tokens
                    out.append({"response": "", "latency_s": 0.0, "batch_size": 1, "error":
                                f"prompt of {n} tokens exceeds the model's context window ({window}) "
                                f"even with every history item dropped"})
                else:
                    out.append(done.pop(0))
            return out
        t0 = time.perf_counter()
        if mode == "generate":
            outs = self._generate([p.input_ids for _, p in items], cfg.max_new_tokens)
            results = [{"response": self._decode(o).strip(), "new_tokens": len(o)} for o in outs]
        elif mode == "constrained":
            results = self._constrained(items, cfg)
        else:
            results = self._rank(items, cfg)
        per = (time.perf_counter() - t0) / max(1, len(items))
        for r in results:
            r["latency_s"] = round(per, 4)
            r["batch_size"] = len(items)
        return results

    def _attention(self, impl: str | None = None) -> str:
        """The model's attention implementation; switched to ``impl`` first when given and different."""
        current = getattr(self.model.config, "_attn_implementation", None) or "sdpa"
        if impl and impl != current:
            self.model.set_attn_implementation(impl)
            current = impl
        return current

    def _forced_greedy(self, grammar: Any, pending: list[int], cache: Any) -> tuple[list[int], int]:
        """Greedy decoding inside ``grammar`` for one sequence, feeding each run of forced tokens in ONE forward.

        ``pending`` are the tokens not yet in ``cache`` (a DynamicCache, possibly holding the prompt). Returns the
        emitted tokens and how many forwards were run. Nothing is computed after the closing ``}}``.
        """
        emitted: list[int] = []
        forwards = 0
        budget = grammar.max_new_tokens()
        while not grammar.done and len(emitted) <= budget:
            out = self.model(input_ids=torch.tensor([pending], device=self.device), past_key_values=cache,
                             use_cache=True, logits_to_keep=1)
            forwards += 1
            tok = self._greedy(grammar, out.logits[0, -1].float())
            grammar.advance(tok)
            forced = grammar.forced_prefix()
            emitted += [tok] + forced
            pending = [tok] + forced
        return emitted, forwards

    def _constrained(self, items: Sequence[tuple[Entry, ChatPrompt]], cfg: DecodeConfig) -> list[dict[str, Any]]:
        if len(items) == 1:  # no padding: the custom loop feeds forced runs at once
            (entry, prompt), = items
            grammar = self._grammar(entry, cfg, library=True)
            prefix = grammar.forced_prefix()
            with torch.inference_mode():
                ids, forwards = self._forced_greedy(grammar, list(prompt.input_ids or []) + prefix, DynamicCache())
            return [{"response": self._decode(prefix + ids), "new_tokens": len(ids), "forwards": forwards,
                     "complete": grammar.done}]
        grammars = [self._grammar(e, cfg, library=True) for e, _ in items]
        prefixes = [g.forced_prefix() for g in grammars]  # e.g. {"tool_name": "< : prefilled, not decoded
        seqs = [list(p.input_ids) + pre for (_, p), pre in zip(items, prefixes)]
        todo = [i for i, g in enumerate(grammars) if not g.done]
        outs: dict[int, list[int]] = {i: [] for i in range(len(items))}
        if todo:
            width = max(len(seqs[i]) for i in todo)
            proc = ToolCallLogitsProcessor([grammars[i] for i in todo], width)
            budget = max(grammars[i].max_new_tokens() for i in todo)
            for i, o in zip(todo, self._generate([seqs[i] for i in todo], budget, [proc])):
                outs[i] = o
        results = []
        for i, g in enumerate(grammars):
            results.append({"response": self._decode(prefixes[i] + outs[i]), "new_tokens": len(outs[i]),
                            "complete": g.done})
        return results

    def _rank_choose(self, entry: Entry, prompt: ChatPrompt, cfg: DecodeConfig) -> _RankRow:
        """One prompt's prefill, every candidate name scored on its KV cache, the best one chosen; the parameters are
        left to :meth:`_decode_rows`."""
        grammar = self._grammar(entry, cfg)
        tools = grammar.tools
        enc = grammar.vocab.encode
        name_seqs = [enc(name_text(t.name)) for t in tools]
        heads = [t.head_ids for t in tools]
        # the prefix shared by every candidate (and every head) is prefilled with the prompt; each name keeps >= 1 token
        shared = min(common_prefix(name_seqs + heads), min(len(s) for s in name_seqs) - 1)
        ids = list(prompt.input_ids or [])
        prefix = ids + name_seqs[0][:shared]
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, logits_to_keep=1)
            cache = out.past_key_values
            first = torch.log_softmax(out.logits[0, -1].float(), -1)
            scores: list[float] = [0.0] if len(tools) == 1 else self._score_suffixes(
                cache, len(prefix), first, [s[shared:] for s in name_seqs], cfg.rank_score)
        best = max(range(len(tools)), key=lambda i: scores[i])
        grammar.select_tool(best)
        head = heads[best]
        if cfg.grammar == "xgrammar" and not grammar.done:  # the parameters under xgrammar, from the same head
            chosen = next(c for c in entry.candidates if c.get("tool_name") == tools[best].name)
            grammar = self._xgrammar([chosen], cfg)
            for t in head:
                grammar.advance(t)
        order = sorted(range(len(tools)), key=lambda i: -scores[i])[:3]
        return _RankRow(grammar=grammar, head=list(head), pending=list(head[shared:]),
                        cache=None if grammar.done else cache,  # a call without parameters is complete: freed now
                        cache_len=len(prefix), budget=grammar.max_new_tokens(),
                        rank_top=[[tools[i].name, round(scores[i], 4)] for i in order])

    def _rank(self, items: Sequence[tuple[Entry, ChatPrompt]], cfg: DecodeConfig) -> list[dict[str, Any]]:
        """``rank`` for a batch: each prompt prefilled and its candidates scored alone (no padding), the chosen
        tools' parameters decoded together, up to :data:`RANK_WINDOW` rows at a time (:meth:`_decode_rows`)."""
        rows: list[_RankRow] = []

        def chosen() -> Iterator[_RankRow]:  # a prompt is prefilled when the decoder has room for it
            for e, p in items:
                rows.append(self._rank_choose(e, p, cfg))
                yield rows[-1]

        if len(items) == 1:  # one row: the plain loop, exactly as before batching
            r = next(chosen())
            if not r.grammar.done:
                with torch.inference_mode():
                    r.emitted, r.forwards = self._forced_greedy(r.grammar, r.pending, r.cache)
        else:
            self._decode_rows(chosen(), RANK_WINDOW)
        return [{"response": self._decode(r.head + r.emitted), "new_tokens": len(r.emitted),
                 "forwards": 2 + r.forwards, "complete": r.grammar.done, "rank_top": r.rank_top} for r in rows]

    def _decode_rows(self, source: Iterator[_RankRow], window: int) -> None:
        """Greedy decoding inside each row's grammar, every forced run fed in one forward (as
        :meth:`_forced_greedy`), the forwards of up to ``window`` rows batched: decoding a small model is bound by
        reading its weights, so one forward for B rows costs little more than one for a single row.

        Continuous batching: the rows' caches (different lengths) are joined left-padded into one; each step feeds
        every active row's pending tokens, right-padded to the longest, with a 2D attention mask that hides every
        padding slot, and the rows' own position ids. A finished row leaves the batch and the next row of ``source``
        takes its place (its cache joined in), so a long-running row does not hold the others' slots empty.
        Results equal one-row decoding up to floating-point rounding of the batched products."""
        active: list[_RankRow] = []
        position: list[int] = []  # each active row's next position
        cache: Any = None
        mask = torch.zeros((0, 0), dtype=torch.long)
        exhausted = False
        while True:
            if not exhausted and len(active) < window:  # admit rows (their prompts prefilled) up to the window
                joining: list[_RankRow] = []
                while len(active) + len(joining) < window:
                    r = next(source, None)
                    if r is None:
                        exhausted = True
                        break
                    if not r.grammar.done:
                        joining.append(r)
                if joining:
                    cache, mask = self._join(cache, mask, joining)
                    active += joining
                    position += [r.cache_len for r in joining]
            if not active:
                return
            step = max(len(r.pending) for r in active)
            ids = torch.full((len(active), step), self.pad_id, dtype=torch.long)
            pos = torch.zeros((len(active), step), dtype=torch.long)
            new = torch.zeros((len(active), step), dtype=torch.long)
            for b, r in enumerate(active):
                n = len(r.pending)
                ids[b, :n] = torch.tensor(r.pending, dtype=torch.long)
                pos[b] = torch.arange(position[b], position[b] + step)
                new[b, :n] = 1
            mask = torch.cat([mask, new], dim=1)
            last = sorted({len(r.pending) - 1 for r in active})  # the logits each row needs
            with torch.inference_mode():
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 position_ids=pos.to(self.device), past_key_values=cache, use_cache=True,
                                 logits_to_keep=torch.tensor(last, device=self.device))
            keep = []
            for b, r in enumerate(active):
                position[b] += len(r.pending)
                r.forwards += 1
                tok = self._greedy(r.grammar, out.logits[b, last.index(len(r.pending) - 1)].float())
                r.grammar.advance(tok)
                forced = r.grammar.forced_prefix()
                r.emitted += [tok] + forced
                r.pending = [tok] + forced
                if not r.grammar.done and len(r.emitted) <= r.budget:
                    keep.append(b)
            if len(keep) < len(active):
                if keep:
                    cache.batch_select_indices(torch.tensor(keep, device=self.device))
                    mask = mask[keep]
                else:
                    cache, mask = None, torch.zeros((0, 0), dtype=torch.long)
                active = [active[b] for b in keep]
                position = [position[b] for b in keep]

    def _join(self, cache: Any, mask: torch.Tensor, rows: list[_RankRow]) -> tuple[Any, torch.Tensor]:
        """``cache`` (the active rows', or None) and ``mask`` with ``rows``' prompt caches appended as new batch
        rows, everything left-padded to the longest; the slots no active row uses (padding, departed rows' tokens)
        are dropped first. Each row's own cache is released."""
        used = mask.bool().any(0).nonzero().squeeze(1) if cache is not None else None
        if used is not None and len(used) < mask.shape[1]:
            mask = mask[:, used]
        else:
            used = None
        width = max([mask.shape[1]] + [r.cache_len for r in rows])
        grow = width - mask.shape[1]
        layers = []
        with torch.inference_mode():
            for layer in range(len(rows[0].cache.layers)):
                keys, values = [], []
                if cache is not None:
                    k, v = cache.layers[layer].keys, cache.layers[layer].values
                    if used is not None:
                        k, v = k.index_select(2, used.to(k.device)), v.index_select(2, used.to(v.device))
                    keys.append(torch.nn.functional.pad(k, (0, 0, grow, 0)) if grow else k)
                    values.append(torch.nn.functional.pad(v, (0, 0, grow, 0)) if grow else v)
                for r in rows:
                    k, v = r.cache.layers[layer].keys, r.cache.layers[layer].values
                    pad = width - k.shape[2]
                    keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)) if pad else k)
                    values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)) if pad else v)
                layers.append((torch.cat(keys), torch.cat(values)))
        added = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            added[i, width - r.cache_len:] = 1
            r.cache = None  # the joined cache holds its keys and values now
        mask = torch.cat([torch.nn.functional.pad(mask, (grow, 0)), added])
        return growing_cache(layers), mask

    @staticmethod
    def _greedy(grammar: Any, scores: torch.Tensor) -> int:
        """The highest-scoring token the grammar allows next."""
        allowed = grammar.allowed()
        if isinstance(allowed, torch.Tensor):
            n = min(allowed.shape[0], scores.shape[0])
            masked = torch.full_like(scores, float("-inf"))
            masked[:n] = torch.where(allowed[:n].to(scores.device), scores[:n], masked[:n])
            return int(torch.argmax(masked))
        return max(allowed, key=lambda t: float(scores[t]))

    def _score_suffixes(self, cache: Any, past_len: int, first_logp: torch.Tensor, suffixes: list[list[int]],
                        how: str) -> list[float]:
        """Log-likelihood of each suffix after the cached prefix, in ONE forward over a token tree.

        The suffixes are merged into a trie (a token shared by several candidates is computed once) and flattened
        into one sequence; a 4D attention mask lets each node see the cached prefix and its own ancestors only,
        with position ids ``past_len + depth``. The cache is cropped back afterwards, so it is not copied.
        """
        nodes: list[tuple[int, int, int]] = []  # (token, parent node index or -1, depth)
        index: dict[tuple[int, int], int] = {}
        paths: list[list[int]] = []
        for s in suffixes:
            parent, path = -1, []
            for depth, tok in enumerate(s):
                key = (parent, tok)
                if key not in index:
                    index[key] = len(nodes)
                    nodes.append((tok, parent, depth))
                parent = index[key]
                path.append(parent)
            paths.append(path)
        totals = [float(first_logp[s[0]]) for s in suffixes]
        # nodes that are some path's last token never need to be fed (nothing is predicted from them)
        feed = sorted({p for path in paths for p in path[:-1]})
        if feed:
            pos = {n: i for i, n in enumerate(feed)}
            q = len(feed)
            allow = torch.zeros((q, past_len + q), dtype=torch.bool)
            allow[:, :past_len] = True
            for n in feed:
                a = n
                while a != -1:  # the node and its ancestors (all of them are fed: they precede a fed node)
                    allow[pos[n], past_len + pos[a]] = True
                    a = nodes[a][1]
            ids = torch.tensor([[nodes[n][0] for n in feed]], device=self.device)
            position_ids = torch.tensor([[past_len + nodes[n][2] for n in feed]], device=self.device)
            out = self.model(input_ids=ids, attention_mask=allow[None, None].to(self.device), position_ids=position_ids,
                             past_key_values=cache, use_cache=True)
            cache.crop(-q)  # drop the tree tokens again
            logp = torch.log_softmax(out.logits[0].float(), -1)
            for i, (s, path) in enumerate(zip(suffixes, paths)):
                for j in range(1, len(s)):
                    totals[i] += float(logp[pos[path[j - 1]], s[j]])
        if how == "mean":
            return [t / len(s) for t, s in zip(totals, suffixes)]
        if how != "sum":
            raise ValueError(f"unknown rank score {how!r}; expected sum or mean")
        return totals
