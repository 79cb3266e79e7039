"""Which decision case an (entry, setting) is: what the interaction history shows about the tool this user wants.

Only the ground truth's functional group matters here (``apis_same_func``: the same job from different providers)
and the history items whose provider (``<Cat>.<Tool>``) is one of the group's providers:

- ``absent``: no history item comes from a group provider (the history cannot tell);
- ``visible``: only the preferred provider appears;
- ``switch``: the preferred provider appears and so does another group provider, rated 0 (rating-integrated) or
  used earlier (chronological): prefer the one shown positively / the later one;
- ``avoid``: only other group providers appear, rated 0 (rating-integrated) or, in the chronological setting, as
  the provider the user used before (the newer one is not shown): avoid them;
- ``conflict``: anything else (e.g. another provider shown unrated in the preferred-only setting, or after the
  preferred one in the chronological setting); the official test set has none.

On the official test set: preferred-only 48.9% ``visible`` / 51.1% ``absent``; rating-integrated 41.5% ``switch``
/ 58.5% ``avoid``; chronological the same 41.5% / 58.5%. :func:`decision_cases` tallies the cases per setting;
training data should contain each case the test has (``synthesize`` reports this for its splits).

:func:`history_oracle` is the ceiling of reading the history with the functional group known: take the preferred
provider when it is shown (the later one in the chronological setting), otherwise exclude the providers shown as
rated 0 or older and pick uniformly among the group's remaining candidates (expected accuracy, 1/k). It reproduces
the project's planning figures (71.5 / 90.2 / 90.2% on the official test set).

:func:`pick_kind` says what a prediction picked, seen from the history (``evaluate --by pick``): the answer, a group
member the history shows (rated 0 / older: copied the wrong way), one it does not show, or another function.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from ..core.data import SETTINGS, Entry, normalize_setting, provider_of
from ..core.prompts import PromptError, parse_prompt

CASES: tuple[str, ...] = ("absent", "visible", "switch", "avoid", "conflict")


def _provider(name: str) -> str:
    try:
        return provider_of(name)
    except ValueError:
        return ""


def group_history(entry: Entry, setting: str) -> list[tuple[str, int | None]]:
    """``(provider, rating)`` of the history items from a provider of the ground truth's functional group, in order.

    Raises :class:`PromptError` naming the entry and setting when the prompt cannot be parsed."""
    setting = normalize_setting(setting)
    try:
        prompt = parse_prompt(entry.prompt(setting), setting)
    except PromptError as exc:
        raise PromptError(f"entry {entry.entry_id} ({setting}): {exc}") from exc
    providers = {_provider(n) for n in entry.group_names} - {""}
    return [(p, h.rating) for h in prompt.history if (p := _provider(h.tool_name)) in providers]


def decision_case(entry: Entry, setting: str, items: list[tuple[str, int | None]] | None = None) -> str:
    """The :data:`CASES` label of ``entry`` under ``setting`` (see the module docstring); ``items``: its
    :func:`group_history` when the caller has it."""
    setting = normalize_setting(setting)
    want = _provider(entry.ground_truth.get("tool_name", ""))
    items = group_history(entry, setting) if items is None else items
    if not items:
        return "absent"
    mine = [i for i, (p, _) in enumerate(items) if p == want]
    others = [i for i, (p, _) in enumerate(items) if p != want]
    if setting == "ratings":
        if any(items[i][1] == 0 for i in mine) or any(items[i][1] != 0 for i in others):
            return "conflict"
    elif setting == "chronological":
        if mine and others and max(others) > min(mine):
            return "conflict"
    elif others:  # preferred-only / none: every shown provider is a preferred one
        return "conflict"
    if mine and others:
        return "switch"
    return "visible" if mine else "avoid"


PICKS: tuple[str, ...] = ("answer", "shown provider", "unshown provider", "other function", "no tool")


def pick_kind(entry: Entry, setting: str, tool_name: str | None,
              items: list[tuple[str, int | None]] | None = None) -> str:
    """What a predicted tool is, seen from the history (:data:`PICKS`): the ``answer``; another member of the
    answer's functional group whose provider the history shows (``shown provider``: in rating-integrated and
    chronological a provider rated 0 or used earlier — the history copied the wrong way); a group member the history
    does not show (``unshown provider``); a tool of another function (``other function``, hallucinated names
    included); ``no tool`` when the response held no tool name."""
    if not tool_name:
        return "no tool"
    if tool_name == entry.ground_truth.get("tool_name"):
        return "answer"
    if tool_name not in set(entry.group_names):
        return "other function"
    items = group_history(entry, setting) if items is None else items
    return "shown provider" if _provider(tool_name) in {p for p, _ in items} else "unshown provider"


def history_choice(entry: Entry, setting: str,
                   items: list[tuple[str, int | None]] | None = None) -> dict[str, float]:
    """The oracle's choice as ``{provider: probability}`` over the group's providers among the candidates: the
    preferred provider when shown (rated 1 / unrated; the later one in the chronological setting), else a uniform
    pick among the group's candidates left after excluding the providers shown rated 0 or used earlier."""
    setting = normalize_setting(setting)
    items = group_history(entry, setting) if items is None else items
    names = set(entry.group_names)
    pool = sorted({_provider(n) for n in entry.candidate_names if n in names} or {_provider(n) for n in names})
    if setting == "ratings":
        positive = [p for p, r in items if r != 0]
        banned = {p for p, r in items if r == 0}
    elif setting == "chronological":
        distinct = list(dict.fromkeys(p for p, _ in reversed(items)))  # latest first
        positive = distinct[:1] if len(distinct) > 1 else []  # a switch is visible only with two providers
        banned = set(distinct[1:]) if positive else set(distinct)
    else:
        positive, banned = [p for p, _ in items], set()
    if positive:
        counts = Counter(positive)
        last = {p: i for i, p in enumerate(positive)}
        return {max(counts, key=lambda p: (counts[p], last[p])): 1.0}
    left = [p for p in pool if p not in banned] or pool
    return {p: 1.0 / len(left) for p in left}


def history_oracle(entries: Sequence[Entry], setting: str) -> float:
    """Expected Tool-choice accuracy of :func:`history_choice` over ``entries`` (provider level)."""
    if not entries:
        return 0.0
    return sum(history_choice(e, setting).get(_provider(e.ground_truth.get("tool_name", "")), 0.0)
               for e in entries) / len(entries)


def decision_cases(entries: Sequence[Entry], settings: Sequence[str] = SETTINGS) -> dict[str, dict[str, Any]]:
    """Per setting: ``n``, the count and share of each case, and the :func:`history_oracle` expected accuracy."""
    out: dict[str, dict[str, Any]] = {}
    for s in settings:
        counts: Counter[str] = Counter()
        hits = 0.0
        for e in entries:  # each prompt parsed once for both
            items = group_history(e, s)
            counts[decision_case(e, s, items)] += 1
            hits += history_choice(e, s, items).get(_provider(e.ground_truth.get("tool_name", "")), 0.0)
        n = len(entries)
        out[normalize_setting(s)] = {
            "n": n, "counts": {c: counts.get(c, 0) for c in CASES},
            "shares": {c: round(counts.get(c, 0) / n, 4) if n else 0.0 for c in CASES},
            "oracle": round(hits / n, 4) if n else 0.0,
        }
    return out
