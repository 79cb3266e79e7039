"""Contrast rows: a training row with the history's evidence flipped, so that the rejected provider becomes the answer.

A synthesized row has an answer (the preferred provider ``P``'s call) and, in its DPO form, a rejected call: the
same call on the provider ``R`` that the history shows rated 0 (rating-integrated) or used before (chronological).
A model that merely copies the provider the history shows gets the ``avoid`` rows wrong, and one that learned
"never copy" gets the ``visible`` / ``switch`` ones wrong; neither reads the rating or the order. :func:`flip_row`
writes the row's minimal counterpart: the same instruction, the same candidates in the same order, the same history
items with the same names, and only the evidence that decides flipped:

- rating-integrated: every item of ``R`` is rated 1 and every item of ``P`` rated 0;
- chronological: the items of ``P`` move to the front (oldest) and those of ``R`` to the end (newest), every other
  item keeps its relative order;

and the answer becomes the rejected call (SFT: ``completion``; DPO: ``chosen`` and ``rejected`` swap). By each
setting's own rule the flipped row's answer is right (it is the ``switch`` case when ``P`` was shown, otherwise the
``visible`` one), so training on a row and its flip together makes the provider's name and its description worthless
and the rating / the order the only signal. Rows without such a counterpart (:func:`flip_row` returns None; the flip
never invents a history item):

- preferred-only rows and rows whose history does not show ``R``;
- chronological rows whose history shows ``R`` but not ``P`` (``avoid``): with ``R``'s items moved to the end, the
  row would differ from its source only in the order of ``R``'s items and the other providers' items, and the
  compact context modes keep only the items of candidate providers, so both would read the same with opposite
  answers. (The official chronological test has no entry in which a lone shown provider is the answer.)

The rejected call of an SFT row comes from the DPO row of the same entry and setting (:func:`rejected_turns`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Iterable

from ..core.data import DataError, provider_of
from ..core.prompts import PromptError, parse_prompt

FLIPPABLE_SETTINGS: tuple[str, ...] = ("ratings", "chronological")


def row_key(row: dict[str, Any]) -> tuple[str, str]:
    """``(entry_id, setting)`` of a row, as strings: the key that pairs an SFT row with its DPO row."""
    return str(row.get("entry_id", "")), str(row.get("setting", ""))


def rejected_turns(dpo_rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """``row_key`` -> the ``rejected`` assistant turns of each DPO row (the last row wins for a repeated key)."""
    return {row_key(r): r["rejected"] for r in dpo_rows if "rejected" in r}


def _call_name(turns: Any) -> str | None:
    try:
        name = json.loads(turns[-1]["content"]).get("tool_name")
    except (ValueError, AttributeError, KeyError, IndexError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _provider(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        return provider_of(name)
    except ValueError:
        return None


def flip_row(row: dict[str, Any], rejected: list[dict[str, str]] | None = None) -> dict[str, Any] | None:
    """The contrast row of ``row`` (see the module docstring), or None when it has none.

    ``row``: an SFT row (``completion``; ``rejected`` = the rejected assistant turns of its DPO row) or a DPO row
    (``chosen`` / ``rejected``; the argument is ignored). None for preferred-only rows, rows without a rejected call,
    rows whose answer or rejected call is not a JSON call, whose two calls share a provider, or whose history does
    not show the rejected provider. The returned row keeps every other field; its ``case`` is the case it now is
    (``switch`` / ``visible``) and ``contrast`` is True. Raises :class:`DataError` naming the row when its system
    prompt cannot be parsed.
    """
    setting = str(row.get("setting", ""))
    if setting not in FLIPPABLE_SETTINGS:
        return None
    answer_key = "chosen" if "chosen" in row else "completion"
    if answer_key == "chosen":
        rejected = row.get("rejected")
    if not rejected or answer_key not in row:
        return None
    p, r = _provider(_call_name(row[answer_key])), _provider(_call_name(rejected))
    if p is None or r is None or p == r:
        return None
    sys_idx = next((i for i, m in enumerate(row["prompt"]) if m["role"] == "system"), None)
    if sys_idx is None:
        return None
    try:
        parsed = parse_prompt(row["prompt"][sys_idx]["content"], setting)
    except PromptError as exc:
        raise DataError(f"row of entry {row.get('entry_id')} ({setting}): cannot parse the prompt: {exc}") from exc
    owner = [_provider(h.tool_name) for h in parsed.history]
    if r not in owner or (setting == "chronological" and p not in owner):
        return None
    if setting == "ratings":
        history = [replace(h, rating=1 if o == r else 0 if o == p else h.rating) for h, o in zip(parsed.history, owner)]
    else:
        history = ([h for h, o in zip(parsed.history, owner) if o == p]
                   + [h for h, o in zip(parsed.history, owner) if o not in (p, r)]
                   + [h for h, o in zip(parsed.history, owner) if o == r])
    prompt = [dict(m) for m in row["prompt"]]
    prompt[sys_idx]["content"] = replace(parsed, history=history).render()
    out = {**row, "prompt": prompt, "case": "switch" if p in owner else "visible", "contrast": True}
    if answer_key == "chosen":
        out["chosen"], out["rejected"] = row["rejected"], row["chosen"]
    else:
        out["completion"] = rejected
    return out
