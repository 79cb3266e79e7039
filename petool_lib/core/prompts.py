"""Parse the official PEToolBench prompts into typed parts and render them back byte for byte.

Every official prompt is ``task_text + HISTORY_MARK + json(history) + TOOLS_MARK + json(candidates) + FORMAT_TEXT``
where the JSON is ``json.dumps(..., ensure_ascii=False)`` with default separators. The renderer is what the
synthesis pipeline uses, so synthesized prompts are byte-compatible with the official ones.

A ``history_last`` prompt (the ``compact-late`` context mode) holds the same parts in another order, so that what
decides the provider sits next to the query: the candidate list first, then the task text (which says how to read
the history: ratings, chronological order) and the history, each item's ``rating`` before its call, then the format
text: ``TOOLS_HEAD + json(candidates) + "\n" + task_text + HISTORY_MARK + json(history, rating first) +
FORMAT_TEXT``. A ``call_first`` prompt (the ``compact-call-first`` context mode) also writes each history item's
call before its instruction (``{"rating": …, "tool_call": …, "instruction": …}``), so that a rating sits a few
tokens before the provider name it rates. :func:`parse_prompt` reads every layout and records which one it read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from .data import HISTORY_MARK, NO_HISTORY, SETTINGS, TOOLS_MARK, normalize_setting

TOOLS_HEAD = TOOLS_MARK.lstrip("\n")  # the tool-list heading without the blank line that separates it from the history

_INTRO = (
    "\nYour task is to use a tool that not only meets real-time user instructions but also aligns with user "
    "preferences.\nThese preferences can be inferred from the user's interaction history provided below, including "
    "past user instructions and corresponding tool calls"
)
TASK_TEXT: dict[str, str] = {
    "preferred": _INTRO + ".\n",
    "ratings": _INTRO + ", with user's binary ratings reflecting the user's satisfaction with the tool calls.\n",
    "chronological": _INTRO + ", which are in chronological order where user is more preferred with latter tool "
    "calls than earlier ones.\n",
}
TASK_TEXT[NO_HISTORY] = TASK_TEXT["preferred"]  # the no-history ablation: the preferred-only prompt, history []
FORMAT_TEXT = (
    "\n\nGenerate your tool call in the following format:\n"
    '{"tool_name": the tool\'s name, "parameters": input parameters in JSON string format on a single line}\n'
    "Example output #1:\n"
    '{"tool_name": "<Search>.<Arxiv Search>.<Get Arxiv Article Information>", "parameters": {"query": '
    '"machine learning", "sort_by": "date", "limit": 3}\n'
    "Example output #2:\n"
    '{"tool_name": "<Travel>.<flight | flight aggregator>.<flight>", "parameters": {}}\n\n'
    "Remember:\nGenerate only the tool call in JSON format without any additional outputs.\n"
    "You will now receive a user instruction; please generate the tool call. \nBegin!\n\n"
)


class PromptError(ValueError):
    """A prompt that does not follow the PEToolBench layout."""


@dataclass
class HistoryItem:
    """One past interaction: the instruction, the call made, and (rating-integrated only) a 0/1 rating."""

    instruction: str
    tool_call: dict[str, Any]
    rating: int | None = None

    @property
    def tool_name(self) -> str:
        return str(self.tool_call.get("tool_name", ""))

    def to_dict(self, rating_first: bool = False, call_first: bool = False) -> dict[str, Any]:
        """The official item layout (``rating`` last); ``rating_first``: the rating before the instruction;
        ``call_first``: the rating (if any), then the call, then the instruction."""
        if call_first:
            rated = {} if self.rating is None else {"rating": self.rating}
            return {**rated, "tool_call": self.tool_call, "instruction": self.instruction}
        out: dict[str, Any] = {"instruction": self.instruction, "tool_call": self.tool_call}
        if self.rating is not None:
            out = {"rating": self.rating, **out} if rating_first else {**out, "rating": self.rating}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HistoryItem":
        if not isinstance(d, dict) or "instruction" not in d or not isinstance(d.get("tool_call"), dict):
            raise PromptError(f"history item needs 'instruction' and an object 'tool_call': {str(d)[:120]}")
        return cls(instruction=d["instruction"], tool_call=d["tool_call"], rating=d.get("rating"))


@dataclass
class Prompt:
    """The typed parts of one system prompt."""

    setting: str
    history: list[HistoryItem]
    candidates: list[dict[str, Any]]
    task_text: str = ""
    format_text: str = FORMAT_TEXT
    extra: dict[str, Any] = field(default_factory=dict)
    history_last: bool = False  # render the history after the candidate list (see the module docstring)
    call_first: bool = False  # each history item: rating, call, then instruction (needs ``history_last``)

    def __post_init__(self) -> None:
        self.setting = normalize_setting(self.setting)
        if not self.task_text:
            self.task_text = TASK_TEXT[self.setting]

    @property
    def candidate_names(self) -> list[str]:
        return [c["tool_name"] for c in self.candidates]

    def render(self) -> str:
        return render_prompt(self.setting, self.history, self.candidates, self.task_text, self.format_text,
                             self.history_last, self.call_first)


def dumps(obj: Any) -> str:
    """The official JSON serialisation (UTF-8 kept, default separators)."""
    return json.dumps(obj, ensure_ascii=False)


def render_prompt(
    setting: str,
    history: list[HistoryItem] | list[dict[str, Any]],
    candidates: list[dict[str, Any]],
    task_text: str | None = None,
    format_text: str = FORMAT_TEXT,
    history_last: bool = False,
    call_first: bool = False,
) -> str:
    """Render a system prompt in the official layout (``history_last`` / ``call_first``: the module docstring's
    other layouts; ``call_first`` only with ``history_last``)."""
    setting = normalize_setting(setting)
    head = task_text or TASK_TEXT[setting]
    if call_first and not history_last:
        raise ValueError("call_first needs history_last (the compact-call-first layout)")
    if history_last:
        items = [(h if isinstance(h, HistoryItem) else HistoryItem.from_dict(h)).to_dict(call_first=True)
                 if call_first else
                 h.to_dict(rating_first=True) if isinstance(h, HistoryItem) else _rating_first(h) for h in history]
        return TOOLS_HEAD + dumps(candidates) + "\n" + head + HISTORY_MARK + dumps(items) + format_text
    items = [h.to_dict() if isinstance(h, HistoryItem) else h for h in history]
    return head + HISTORY_MARK + dumps(items) + TOOLS_MARK + dumps(candidates) + format_text


def _rating_first(item: dict[str, Any]) -> dict[str, Any]:
    return {"rating": item["rating"], **{k: v for k, v in item.items() if k != "rating"}} if "rating" in item else item


def detect_setting(text: str) -> str:
    for s in SETTINGS:
        if text.startswith(TASK_TEXT[s] + HISTORY_MARK):
            return s
    raise PromptError("prompt does not start with any known PEToolBench task text")


def parse_prompt(text: str, setting: str | None = None) -> Prompt:
    """Split a system prompt into task text, history items, candidate tools and output-format text.

    Reads the official layout, the ``history_last`` one (history after the candidate list) and ``call_first``.
    """
    if text.count(HISTORY_MARK) != 1 or text.count(TOOLS_HEAD) != 1:
        raise PromptError("prompt must contain exactly one history marker and one tool-list marker")
    decoder = json.JSONDecoder()
    history_last = text.index(TOOLS_HEAD) < text.index(HISTORY_MARK)
    if history_last:
        if not text.startswith(TOOLS_HEAD):
            raise PromptError("a prompt with the tool list before the history must start with the tool list")
        try:
            candidates, end = decoder.raw_decode(text, len(TOOLS_HEAD))
        except json.JSONDecodeError as exc:
            raise PromptError(f"candidate list is not valid JSON: {exc}") from exc
        head, rest = text[end:].split(HISTORY_MARK)
        if not head.startswith("\n"):
            raise PromptError("the task text must follow the candidate list on a new line")
        head = head[1:]
        try:
            history_raw, end = decoder.raw_decode(rest)
        except json.JSONDecodeError as exc:
            raise PromptError(f"interaction history is not valid JSON: {exc}") from exc
    else:
        if text.count(TOOLS_MARK) != 1:
            raise PromptError("prompt must contain exactly one history marker and one tool-list marker")
        head, rest = text.split(HISTORY_MARK)
        hist_txt, rest = rest.split(TOOLS_MARK)
        try:
            candidates, end = decoder.raw_decode(rest)
        except json.JSONDecodeError as exc:
            raise PromptError(f"candidate list is not valid JSON: {exc}") from exc
        try:
            history_raw = json.loads(hist_txt)
        except json.JSONDecodeError as exc:
            raise PromptError(f"interaction history is not valid JSON: {exc}") from exc
    if not isinstance(history_raw, list) or not isinstance(candidates, list):
        raise PromptError("history and candidates must be JSON lists")
    if setting is None:
        setting = next((s for s in SETTINGS if TASK_TEXT[s] == head), None) or (
            "ratings" if any("rating" in h for h in history_raw) else "preferred"
        )
    return Prompt(
        setting=setting,
        history=[HistoryItem.from_dict(h) for h in history_raw],
        candidates=candidates,
        task_text=head,
        format_text=rest[end:],
        history_last=history_last,
        call_first=history_last and any(_call_first(h) for h in history_raw),
    )


def _call_first(item: Any) -> bool:
    """Whether a raw history item is in the ``call_first`` layout (its call before its instruction)."""
    keys = [k for k in item if k != "rating"] if isinstance(item, dict) else []
    return keys[:1] == ["tool_call"]


def trim_history(prompt: Prompt, fits: Callable[[str], bool]) -> tuple[Prompt, int]:
    """Drop the oldest history items until ``fits(rendered)`` holds; never touch candidates or format text.

    Returns the trimmed prompt and how many items were dropped (0 when it already fits). When even an empty
    history does not fit, the empty-history prompt is returned: the caller decides what to do.
    """
    if fits(prompt.render()):
        return prompt, 0
    lo, hi = 1, len(prompt.history)  # binary search on the number of dropped items
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(replace(prompt, history=prompt.history[mid:]).render()):
            hi = mid
        else:
            lo = mid + 1
    return replace(prompt, history=prompt.history[lo:]), lo
