"""Chat messages for one (entry, setting), fitted to a prompt budget.

As in the reference evaluation, the setting's system prompt is the system message and the query is the user message,
rendered through the model's chat template. In the first two modes a prompt within ``max_prompt_tokens`` is passed
through byte-identical and only a prompt over budget is cut; the ``compact*`` modes rewrite every prompt:

- ``oldest`` (the reference behaviour): the OLDEST interaction-history items are dropped until it fits; a prompt
  that does not fit even with an empty history is kept whole and flagged ``over_budget``.
- ``evidence`` (:func:`fit_prompt`): the history items that carry evidence for this candidate list (same provider or
  same API name as a candidate) are kept first, then the items most related to the query; kept items keep their
  order and ratings. If not every evidence item fits, the candidates' free-text descriptions are shortened first
  (down to a floor), and only then evidence items dropped; below the floor only with no history left.

- ``compact`` (:func:`compact_prompt`, applied to EVERY prompt, within budget or not): only the evidence items are
  kept (original order and ratings) and every description is cut to ``COMPACT_DESCRIPTION`` characters; then, if
  still over budget, the ``evidence`` procedure. Short, evidence-dense prompts: about a third of the official
  length, so a CPU trains on three times the rows per minute (the same mode must then be used at inference).
- ``compact-late``: ``compact`` in another order (:attr:`~petool_lib.core.prompts.Prompt.history_last`): the
  candidate list first, then the task text and the kept history (each item's rating before its call), then the
  format text, so what decides the provider sits next to the query. An ordering rule: the same items, candidates
  and texts as ``compact``; train and infer with the same mode.
- ``compact-call-first``: ``compact-late`` with each history item written rating, call, instruction
  (:attr:`~petool_lib.core.prompts.Prompt.call_first`), so that the rating sits a few tokens before the provider
  name it rates rather than after the instruction. Again the same items and texts, reordered.
- ``compact-tally``: ``compact`` with each candidate annotated by what the WHOLE history says about its provider
  (:func:`tally_candidates`: a ``your_history`` field right after its name — how many past calls used that provider
  and, by setting, how many were rated 1 / 0, or in which call it was last used). A summary of the history written
  next to the names the model chooses between (the history itself is still shown): the rule counts, it does not
  choose — every candidate keeps its place and gets the same kind of line, and which count means "prefer" is left to
  the model. The question it answers: does the small model fail to join a candidate with its history items, or to
  read a rating / an order at all?

The task text, the candidate tools (names, parameter names, types, defaults), the output-format instructions and
the query are never cut (the reference's right-side truncation at 4,000 tokens cut the query).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

from .data import Entry, normalize_setting, provider_of, split_tool_name
from .prompts import HistoryItem, Prompt, PromptError, parse_prompt, trim_history

CONTEXT_MODES: tuple[str, ...] = ("evidence", "oldest", "compact", "compact-late", "compact-call-first",
                                  "compact-tally")
# the modes that rewrite every prompt, within budget or not
COMPACT_MODES: tuple[str, ...] = ("compact", "compact-late", "compact-call-first", "compact-tally")
TALLY_FIELD = "your_history"  # the candidate field compact-tally adds (right after tool_name)
COMPACT_DESCRIPTION = 80  # characters per description in ``compact`` mode
_WORD = re.compile(r"[0-9a-z]+")
ELLIPSIS = "..."

# Tokens that end an assistant turn in common chat templates (only those present in a vocabulary are used).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


@dataclass
class ChatPrompt:
    """The messages of one request and, with a tokenizer, its token ids and budget bookkeeping."""

    entry_id: int
    setting: str
    messages: list[dict[str, str]]
    input_ids: list[int] | None = None
    prompt_tokens: int | None = None
    trimmed_items: int = 0
    over_budget: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def trimmed(self) -> bool:
        return self.trimmed_items > 0

    def digest(self) -> str:
        """sha256 of what the model actually sees: the token ids when known, else the messages."""
        payload = self.input_ids if self.input_ids is not None else self.messages
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def make_messages(system: str, query: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


def template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` through the tokenizer's chat template, ending with the assistant header.

    A tokenizer without a chat template gets a plain ``system\\n\\nuser\\n`` layout (stated, never silent).
    """
    if getattr(tokenizer, "chat_template", None):
        out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        return list(out["input_ids"])
    text = "\n\n".join(m["content"] for m in messages) + "\n"
    return list(tokenizer(text, add_special_tokens=True)["input_ids"])


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Ids that stop generation: the tokenizer's EOS plus any end-of-turn token of its vocabulary."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    for tok in END_OF_TURN_TOKENS:
        if tok in vocab and vocab[tok] not in ids:
            ids.append(int(vocab[tok]))
    return ids


def build_chat_prompt(
    entry: Entry, setting: str, tokenizer: Any = None, max_prompt_tokens: int | None = None, context: str = "oldest"
) -> ChatPrompt:
    """Messages for ``entry`` under ``setting``; with a tokenizer, token ids fitted to ``max_prompt_tokens``.

    ``context="oldest"`` drops the oldest history items (the reference behaviour; a prompt still too long is kept
    whole and flagged ``over_budget``); ``"evidence"`` uses :func:`fit_prompt` and records its
    :class:`ContextReport` in ``extra["context"]``. Without a tokenizer the prompt is returned untouched.
    """
    if context not in CONTEXT_MODES:
        raise ValueError(f"unknown context mode {context!r}; expected one of {CONTEXT_MODES}")
    setting = normalize_setting(setting)
    system = entry.prompt(setting)
    messages = make_messages(system, entry.query)
    cp = ChatPrompt(entry.entry_id, setting, messages)
    if tokenizer is None:
        return cp
    ids = template_ids(tokenizer, messages)
    if context in COMPACT_MODES or (max_prompt_tokens and len(ids) > max_prompt_tokens):
        try:
            parsed = parse_prompt(system, setting)
        except PromptError as exc:
            raise PromptError(f"entry {entry.entry_id} ({setting}): cannot fit the prompt: {exc}") from exc

        def count(text: str) -> int:
            return len(template_ids(tokenizer, make_messages(text, entry.query)))

        if context != "oldest":
            fitted, report = fit_prompt(parsed, entry.query, count, max_prompt_tokens, context, tokens=len(ids))
            cp.trimmed_items = report.dropped_items
            cp.extra["context"] = report.to_dict()
        else:
            fitted, cp.trimmed_items = trim_history(parsed, lambda text: count(text) <= max_prompt_tokens)
        cp.messages = make_messages(fitted.render(), entry.query)
        ids = template_ids(tokenizer, cp.messages)
        cp.over_budget = bool(max_prompt_tokens) and len(ids) > max_prompt_tokens
    cp.input_ids = ids
    cp.prompt_tokens = len(ids)
    return cp


# --- evidence-aware context -------------------------------------------------------------------------------------


def _api_of(name: str) -> str:
    try:
        return split_tool_name(name)[2]
    except ValueError:
        return ""


def _provider(name: str) -> str:
    try:
        return provider_of(name)
    except ValueError:
        return ""


def evidence_items(prompt: Prompt) -> list[int]:
    """Indices of the history items that carry evidence for THIS candidate list: the item's tool comes from one of
    the candidates' providers, or has the same API name as a candidate (another provider's version of it)."""
    providers = {_provider(n) for n in prompt.candidate_names} - {""}
    apis = {_api_of(n) for n in prompt.candidate_names} - {""}
    return [i for i, h in enumerate(prompt.history)
            if _provider(h.tool_name) in providers or _api_of(h.tool_name) in apis]


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def relatedness(query: str, item: HistoryItem) -> float:
    """Word-set Jaccard similarity of the query and the item's instruction plus tool name (cheap, deterministic)."""
    a, b = _words(query), _words(item.instruction + " " + item.tool_name)
    return len(a & b) / len(a | b) if a | b else 0.0


def history_priority(prompt: Prompt, query: str) -> list[int]:
    """History indices in the order they are kept under a budget: evidence items newest first, then the others by
    relatedness to the query (ties: newest first)."""
    ev = evidence_items(prompt)
    ev_set = set(ev)
    rest = [i for i in range(len(prompt.history)) if i not in ev_set]
    rest.sort(key=lambda i: (-relatedness(query, prompt.history[i]), -i))
    return sorted(ev, reverse=True) + rest


def _cut(text: Any, limit: int) -> Any:
    if not isinstance(text, str) or len(text) <= limit:
        return text
    return text[:limit].rstrip() + ELLIPSIS if limit > 0 else ""


def shorten_descriptions(candidates: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Candidates with every tool and parameter description cut to ``limit`` characters (``...`` marks a cut).
    Names, types, defaults, key order and every other field are kept as they are."""
    out = []
    for cand in candidates:
        c = {k: _cut(v, limit) if k == "tool_description" else v for k, v in cand.items()}
        for key in ("required_parameters", "optional_parameters"):
            if isinstance(c.get(key), list):
                c[key] = [{k: _cut(v, limit) if k == "description" else v for k, v in p.items()}
                          if isinstance(p, dict) else p for p in c[key]]
        out.append(c)
    return out


def _longest_description(candidates: list[dict[str, Any]]) -> int:
    n = 0
    for cand in candidates:
        n = max(n, len(str(cand.get("tool_description") or "")))
        for key in ("required_parameters", "optional_parameters"):
            for p in cand.get(key) or []:
                if isinstance(p, dict):
                    n = max(n, len(str(p.get("description") or "")))
    return n


@dataclass
class ContextReport:
    """What the context builder did to one prompt (recorded with each prediction row)."""

    mode: str
    items: int                  # history items in the official prompt
    evidence_items: int         # of those, items that carry evidence for the candidate list
    kept_items: int
    kept_evidence: int
    description_limit: int | None = None  # characters per description after shortening; None: not shortened
    tokens_before: int | None = None
    tokens_after: int | None = None
    fits: bool = True

    @property
    def dropped_items(self) -> int:
        return self.items - self.kept_items

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dropped_items": self.dropped_items}


def _largest(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The largest k in [lo, hi] with ok(k), assuming ok is monotone (true up to some k); lo - 1 when none."""
    if not ok(lo):
        return lo - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def compact_prompt(prompt: Prompt, description_limit: int = COMPACT_DESCRIPTION) -> Prompt:
    """``prompt`` with only its evidence items (original order and ratings) and every tool / parameter description
    cut to ``description_limit`` characters. Candidates, names, parameter names, types and defaults are kept."""
    keep = evidence_items(prompt)
    return replace(prompt, history=[prompt.history[i] for i in keep],
                   candidates=shorten_descriptions(prompt.candidates, description_limit))


def _tally_text(setting: str, n: int, items: list[tuple[int, HistoryItem]]) -> str:
    """One candidate's line: its provider's past calls among the ``n`` history items (``items``: index, item)."""
    if not items:
        return "provider never used"
    text = f"provider used {len(items)} time" + ("s" if len(items) > 1 else "")
    if setting == "ratings":
        ones = sum(1 for _, h in items if h.rating == 1)
        zeros = sum(1 for _, h in items if h.rating == 0)
        other = len(items) - ones - zeros
        text += f": {ones} rated 1, {zeros} rated 0" + (f", {other} unrated" if other else "")
    elif setting == "chronological":
        text += f", last in call {items[-1][0] + 1} of {n}"
    return text


def tally_candidates(prompt: Prompt) -> list[dict[str, Any]]:
    """The candidates, each with a ``your_history`` field right after ``tool_name``: how many of the history's items
    used the candidate's provider (``<Cat>.<Tool>``), and — rating-integrated — how many of those were rated 1 / 0,
    — chronological — the position of the last one (calls numbered oldest first). Counted on ``prompt.history`` as
    given, so call it before any item is dropped. Every candidate gets a line (also "not used"); nothing else of a
    candidate changes. A name without a provider part gets no line."""
    n = len(prompt.history)
    by_provider: dict[str, list[tuple[int, HistoryItem]]] = {}
    for i, h in enumerate(prompt.history):  # each item's provider parsed once, not once per candidate
        by_provider.setdefault(_provider(h.tool_name), []).append((i, h))
    out = []
    for cand in prompt.candidates:
        prov = _provider(str(cand.get("tool_name", "")))
        if not prov:
            out.append(dict(cand))
            continue
        items = by_provider.get(prov, [])
        c: dict[str, Any] = {}
        for k, v in cand.items():
            if k != TALLY_FIELD:
                c[k] = v
            if k == "tool_name":
                c[TALLY_FIELD] = _tally_text(prompt.setting, n, items)
        out.append(c)
    return out


DESCRIPTION_FLOOR = 120  # characters a description keeps before evidence items are given up (then shortened further)


def fit_prompt(prompt: Prompt, query: str, count: Callable[[str], int], budget: int | None,
               mode: str = "evidence", tokens: int | None = None,
               floor: int = DESCRIPTION_FLOOR) -> tuple[Prompt, ContextReport]:
    """Fit ``prompt`` into ``budget`` tokens as counted by ``count(system_text)`` (the whole templated request).

    A prompt that fits is returned unchanged (it renders byte-identical to the official one). Otherwise, in
    ``evidence`` mode, in this order until it fits:

    1. drop history items, keeping evidence items first (newest first), then the items most related to the query;
    2. if not every evidence item fits, shorten the candidates' free-text descriptions (tool and parameter
       descriptions) as little as needed to keep them all, down to ``floor`` characters — the evidence decides which
       provider this user wants, the description tail rarely decides which function is meant;
    3. at the floor, drop the lowest-priority evidence items;
    4. with no history left, shorten the descriptions below the floor.

    ``oldest`` mode drops the oldest items first (the reference behaviour), then step 4. Kept items keep their
    original order and ratings. Never dropped or changed: a candidate, its name, parameter names, types or defaults,
    the task, format text or query. ``fits`` is False only when nothing more can be cut. ``tokens``:
    ``count(prompt.render())`` when the caller has measured it.
    """
    if mode not in CONTEXT_MODES:
        raise ValueError(f"unknown context mode {mode!r}; expected one of {CONTEXT_MODES}")
    if mode in COMPACT_MODES:
        return _fit_compact(prompt, query, count, budget, floor, mode)
    ev = evidence_items(prompt)
    ev_set = set(ev)
    n = len(prompt.history)
    before = count(prompt.render()) if tokens is None else tokens
    report = ContextReport(mode, n, len(ev), n, len(ev), tokens_before=before, tokens_after=before)
    if not budget or before <= budget:
        return prompt, report
    order = history_priority(prompt, query) if mode == "evidence" else list(range(n - 1, -1, -1))
    longest = _longest_description(prompt.candidates)

    def with_items(k: int, limit: int | None = None) -> Prompt:
        keep = sorted(order[:k])
        cands = prompt.candidates if limit is None else shorten_descriptions(prompt.candidates, limit)
        return replace(prompt, history=[prompt.history[i] for i in keep], candidates=cands)

    def fits(k: int, limit: int | None = None) -> bool:
        return count(with_items(k, limit).render()) <= budget

    limit: int | None = None
    k = _largest(0, n, fits)
    if mode == "evidence" and k < len(ev) and longest > floor:  # steps 2-3
        if fits(len(ev), floor):
            limit = _largest(floor, longest, lambda lim: fits(len(ev), lim))
        else:
            limit = floor
        k = _largest(0, n, lambda k: fits(k, limit))
        if k < 0:
            limit = None
    if k < 0:  # step 4: the candidates alone are over budget (at the floor): shorten further, with no history
        limit = max(_largest(0, longest, lambda lim: fits(0, lim)), 0)
        k = 0
    out = with_items(k, limit)
    after = count(out.render())
    kept = set(order[:k])
    report = replace(report, kept_items=len(kept), kept_evidence=len(kept & ev_set), description_limit=limit,
                     tokens_after=after, fits=after <= budget)
    return out, report


def _fit_compact(prompt: Prompt, query: str, count: Callable[[str], int], budget: int | None,
                 floor: int, mode: str = "compact") -> tuple[Prompt, ContextReport]:
    """``compact`` mode: :func:`compact_prompt`, then (over budget) the ``evidence`` procedure on the result.

    ``compact-late`` / ``compact-call-first``: the same in their layouts (counted that way); ``compact-tally``: the
    candidates first annotated by :func:`tally_candidates` on the whole history."""
    n, n_ev = len(prompt.history), len(evidence_items(prompt))
    longest = _longest_description(prompt.candidates)
    before = count(prompt.render())
    if mode == "compact-tally":
        prompt = replace(prompt, candidates=tally_candidates(prompt))
    small = replace(compact_prompt(prompt), history_last=mode in ("compact-late", "compact-call-first"),
                    call_first=mode == "compact-call-first")
    out, rep = fit_prompt(small, query, count, budget, "evidence", floor=min(floor, COMPACT_DESCRIPTION))
    limit = rep.description_limit
    if limit is None and longest > COMPACT_DESCRIPTION:
        limit = COMPACT_DESCRIPTION
    report = ContextReport(mode, n, n_ev, rep.kept_items, rep.kept_evidence,
                           description_limit=limit, tokens_before=before,
                           tokens_after=rep.tokens_after, fits=rep.fits)
    return out, report
