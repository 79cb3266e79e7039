"""Hugging Face decoding of tool calls: free ``generate``, grammar-``constrained`` and candidate ``rank`` modes.

- ``generate``: batched (left padding), greedy, stops at the end-of-turn token, at most ``max_new_tokens``.
- ``constrained``: the same batched greedy ``model.generate`` with :class:`ToolCallLogitsProcessor`, which keeps every
  row inside :class:`~petool_lib.grammar.ToolCallGrammar` (one of the entry's candidate names, that tool's parameter
  names, JSON values): invalid-format and hallucinated tools are impossible by construction.
- ``rank``: one prefill of the shared prompt (plus the token prefix shared by every candidate), then the
  log-likelihood of each candidate's ``{"tool_name": "NAME"`` continuation on top of that KV cache (all candidates
  in one batched forward over a copy of the cache), the best candidate chosen, and its parameters generated as in
  ``constrained`` from the same cache.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from .chat import ChatPrompt, build_chat_prompt, end_of_turn_ids
from .data import Entry
from .grammar import ToolCallGrammar, name_text, vocab_index
from .models import load_model, resolve_model
from .pred_cache import adapter_hash, model_fingerprint

MODES = ("generate", "constrained", "rank")


@dataclass
class DecodeConfig:
    """Decoding parameters (all of them are part of the prediction-cache key)."""

    max_new_tokens: int = 128
    max_value_chars: int = 128
    max_number_chars: int = 20
    rank_score: str = "sum"  # sum | mean of the candidate-name token log-probabilities
    rank_chunk: int = 16  # candidates scored per batched forward

    def key(self, mode: str) -> dict[str, Any]:
        d = asdict(self)
        if mode == "generate":
            return {"max_new_tokens": d["max_new_tokens"]}
        d.pop("max_new_tokens")
        d.pop("rank_chunk")
        if mode == "constrained":
            d.pop("rank_score")
        return d


class ToolCallLogitsProcessor(LogitsProcessor):
    """Masks each batch row's logits to the tokens its :class:`ToolCallGrammar` allows next."""

    def __init__(self, grammars: Sequence[ToolCallGrammar], prompt_len: int) -> None:
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
                keep = torch.zeros(scores.shape[1], dtype=torch.bool)
                keep[:n] = allowed[:n]
                masked[row] = torch.where(keep, scores[row], masked[row])
            else:
                idx = torch.tensor(allowed, dtype=torch.long)
                masked[row, idx] = scores[row, idx]
        return masked


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = seqs[0][i]
        if any(s[i] != t for s in seqs):
            return i
    return n


class HFBackend:
    """A local transformers causal LM (optionally with a PEFT adapter) predicting tool calls."""

    name = "hf"

    def __init__(self, model: str, adapter: str | None = None, dtype: str | None = None, device: str | None = None):
        torch_dtype = getattr(torch, dtype) if dtype else None
        self.model_name = model
        self.adapter = adapter
        self.dtype = dtype or "default"
        self.model, self.tokenizer = load_model(model, adapter=adapter, dtype=torch_dtype, device=device)
        self.device = next(self.model.parameters()).device
        self.eos_ids = end_of_turn_ids(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self._identity: dict[str, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """What the predictions depend on besides the prompt: model fingerprint, adapter content hash, dtype."""
        if self._identity is None:
            self._identity = {
                "backend": "hf",
                "model": model_fingerprint(resolve_model(self.model_name)),
                "adapter": adapter_hash(self.adapter) if self.adapter else None,
                "dtype": str(next(self.model.parameters()).dtype),
            }
        return self._identity

    def decoding_key(self, mode: str, cfg: DecodeConfig) -> dict[str, Any]:
        return cfg.key(mode)

    def default_batch_size(self) -> int:
        """1 on CPU (no padding: the causal fast path, and CPU gains nothing from batching long prompts), 8 on GPU."""
        return 8 if self.device.type == "cuda" else 1

    def context_window(self) -> int | None:
        n = getattr(self.model.config, "max_position_embeddings", None)
        return int(n) if n else None

    def prompt(self, entry: Entry, setting: str, max_prompt_tokens: int | None) -> ChatPrompt:
        return build_chat_prompt(entry, setting, self.tokenizer, max_prompt_tokens)

    # -- generation helpers ------------------------------------------------------------------------------------
    def _batch(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # left padding
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def _generate(self, seqs: Sequence[Sequence[int]], max_new_tokens: int, processors: list[Any] | None = None,
                  past_key_values: Any = None) -> list[list[int]]:
        ids, mask = self._batch(seqs)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                temperature=None, top_p=None, top_k=None, eos_token_id=self.eos_ids, pad_token_id=self.pad_id,
                logits_processor=LogitsProcessorList(processors or []), past_key_values=past_key_values,
            )
        new = out[:, ids.shape[1]:].tolist()
        result = []
        for row in new:
            cut = next((i for i, t in enumerate(row) if t in self.eos_ids), len(row))
            result.append(row[:cut])
        return result

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def _grammar(self, entry: Entry, cfg: DecodeConfig) -> ToolCallGrammar:
        return ToolCallGrammar(entry.candidates, vocab_index(self.tokenizer), self.eos_ids,
                               cfg.max_value_chars, cfg.max_number_chars)

    # -- modes -------------------------------------------------------------------------------------------------
    def run(self, items: Sequence[tuple[Entry, ChatPrompt]], mode: str, cfg: DecodeConfig) -> list[dict[str, Any]]:
        """Predict one batch; returns per item ``{"response", "latency_s", ...extra}``."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        t0 = time.perf_counter()
        if mode == "generate":
            outs = self._generate([p.input_ids for _, p in items], cfg.max_new_tokens)
            results = [{"response": self._decode(o).strip(), "new_tokens": len(o)} for o in outs]
        elif mode == "constrained":
            results = self._constrained(items, cfg)
        else:
            results = [self._rank(e, p, cfg) for e, p in items]
        per = (time.perf_counter() - t0) / max(1, len(items))
        for r in results:
            r["latency_s"] = round(per, 4)
            r["batch_size"] = len(items) if mode != "rank" else 1
        return results

    def _constrained(self, items: Sequence[tuple[Entry, ChatPrompt]], cfg: DecodeConfig) -> list[dict[str, Any]]:
        grammars = [self._grammar(e, cfg) for e, _ in items]
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

    def _rank(self, entry: Entry, prompt: ChatPrompt, cfg: DecodeConfig) -> dict[str, Any]:
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
            scores: list[float] = [0.0] if len(tools) == 1 else []
            for lo in range(0, len(tools) if len(tools) > 1 else 0, cfg.rank_chunk):
                chunk = [s[shared:] for s in name_seqs[lo:lo + cfg.rank_chunk]]
                scores.extend(self._score_suffixes(cache, len(prefix), first, chunk, cfg.rank_score))
        best = max(range(len(tools)), key=lambda i: scores[i])
        grammar.select_tool(best)
        head = heads[best]
        response_ids = list(head)
        new_tokens = 0
        if not grammar.done:
            full = ids + head
            proc = ToolCallLogitsProcessor([grammar], len(full))
            gen = self._generate([full], grammar.max_new_tokens(), [proc], past_key_values=cache)[0]
            response_ids += gen
            new_tokens = len(gen)
        order = sorted(range(len(tools)), key=lambda i: -scores[i])[:3]
        return {
            "response": self._decode(response_ids), "new_tokens": new_tokens, "complete": grammar.done,
            "rank_top": [[tools[i].name, round(scores[i], 4)] for i in order],
        }

    def _score_suffixes(self, cache: Any, past_len: int, first_logp: torch.Tensor, suffixes: list[list[int]],
                        how: str) -> list[float]:
        """Log-likelihood of each suffix after the cached prefix (one batched forward on a copy of the cache)."""
        totals = [float(first_logp[s[0]]) for s in suffixes]
        rest = [s[:-1] for s in suffixes]  # inputs whose next-token predictions score s[1:]
        width = max(len(r) for r in rest)
        if width > 0:
            n = len(suffixes)
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(n)
            ids = torch.full((n, width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((n, past_len + width), dtype=torch.long)
            mask[:, :past_len] = 1
            for i, r in enumerate(rest):  # right padding after the shared prefix
                if r:
                    ids[i, :len(r)] = torch.tensor(r)
                    mask[i, past_len:past_len + len(r)] = 1
            out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                             past_key_values=batch_cache, use_cache=True)
            logp = torch.log_softmax(out.logits.float(), -1)
            for i, s in enumerate(suffixes):
                for j in range(1, len(s)):
                    totals[i] += float(logp[i, j - 1, s[j]])
        if how == "mean":
            return [t / len(s) for t, s in zip(totals, suffixes)]
        if how != "sum":
            raise ValueError(f"unknown rank score {how!r}; expected sum or mean")
        return totals
