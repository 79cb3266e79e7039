"""Provider-renaming probe: does a model read the interaction history, or has it memorised which providers users like?

:func:`rename_providers` returns the same entry with every provider name (the ``<Tool>`` part of
``<Category>.<Tool>.<API>``) replaced by a new, made-up name, consistently within that entry, and the candidate list
shuffled. A model that infers the preference from the history keeps its accuracy on renamed entries; a model that
learned "users like provider X" loses it.

What changes, per entry:

- the provider part of every tool name: history items of all three setting prompts, the candidate list (in the
  prompts and ``Entry.candidates``), ``api_call_ground_truth.tool_name``, ``tool_name`` of ``api_ground_truth`` and
  of every ``apis_same_func`` record, and every name in ``tool_comb``;
- whole-word, case-sensitive occurrences of an old provider name (leading/trailing whitespace of the name ignored)
  in description texts: the candidates' ``tool_description`` and parameter ``description`` fields, and
  ``tool_desc`` / ``api_desc`` / parameter ``description`` of ``api_ground_truth`` and ``apis_same_func``. "Whole
  word" means not preceded or followed by a letter, digit or underscore; so a provider named ``Image`` also renames
  the word ``Image`` in a description (descriptions are free text, the rule cannot tell the two apart);
- the order of the candidate list: one seeded permutation per entry, the same in every setting's prompt and in
  ``Entry.candidates``.

What does not change: category and API names, parameters (names, types, defaults, values, including the ground
truth's), history instructions, ratings and the order of history items, the query, the ``Example`` of the API
records, ``func``, ``entry_id``, ``history_length``, ``num_tools_combined``, the task text and the output-format
text of each prompt (byte for byte, including its two example tool names, which no official entry uses as
providers). A history instruction or a parameter value that names a provider keeps the old name, as the query does:
in the official test set that is mostly a provider named after its subject (``Azure``, ``Sephora``, ``Spotify``).

New names are built from syllables by a RNG seeded with ``(seed, entry_id)`` (e.g. ``Korvanta``, ``Fosvado API``,
``Mikera_v2``): unique within the entry, never equal (case-insensitively) to one of the entry's provider names, and
never containing one as a whole word. The same old provider gets the same new name everywhere in the entry; in
another entry it gets another. The same seed gives the same output.

CLI::

    python -m petool_lib.harness.probes --test PATH --out PATH [--seed 0] [--limit N]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from ..core.data import SETTINGS, DataError, Entry, load_test_set, split_tool_name
from ..core.io import write_json
from ..core.prompts import Prompt, PromptError, parse_prompt

# Keys whose string values are free-text descriptions (whole-word renaming applies there only).
DESCRIPTION_KEYS: frozenset[str] = frozenset({"tool_description", "description", "tool_desc", "api_desc"})
_ONSETS = ("b", "c", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "fl", "gr", "kl", "pr", "st", "tr")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o")
_CODAS = ("n", "r", "l", "s", "m")  # inside a name, after a syllable (35%)
_ENDINGS = ("", "", "n", "r", "x", "s", "nta", "lo", "ra", "via", "lix", "do")
_STYLES = ("{}", "{}", "{}", "{} API", "{}_API", "{} Hub", "{}_v2")


def _word_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``names`` (stripped) as a whole word, longest name first; None when empty."""
    words = sorted({n.strip() for n in names if n.strip()}, key=lambda s: (-len(s), s))
    if not words:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)")


def _syllables(rng: random.Random) -> str:
    n = rng.choice((2, 2, 3))
    stem = ""
    for i in range(n):
        stem += rng.choice(_ONSETS) + rng.choice(_VOWELS)
        if i < n - 1 and rng.random() < 0.35:
            stem += rng.choice(_CODAS)
    return stem


def _new_name(rng: random.Random) -> str:
    """A pronounceable made-up provider name such as ``Korvanta``, ``Mikera_v2`` or ``Fosvado API``."""
    stem = _syllables(rng)
    return rng.choice(_STYLES).format((stem + rng.choice(_ENDINGS)).capitalize())


# ``words`` renaming (:func:`rename_row` ``style="words"``): a provider name is cut into words (camel case, digits
# and separators apart) and each distinctive word is replaced, the same word by the same made-up word everywhere in
# the row, so names that share words keep sharing them (``Spotify``, ``Spotify_v3``, ``Spotify Web`` ->
# ``Korvanta``, ``Korvanta_v3``, ``Korvanta Web``): versions of one service stay near-duplicates, as they are in
# PEToolBench, and choosing among them still needs the history. Words shorter than 3 letters, digits, separators
# and the generic words below are kept.
_NAME_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^A-Za-z\d]+")
GENERIC_WORDS: frozenset[str] = frozenset({
    "api", "apis", "app", "cloud", "com", "data", "free", "hub", "live", "net", "new", "official", "online", "pro",
    "service", "services", "the", "web"})


def _recase(word: str, like: str) -> str:
    if len(like) > 1 and like.isupper():
        return word.upper()
    return word.capitalize() if like[:1].isupper() else word.lower()


def _word_names(olds: list[str], rng: random.Random, where: str) -> dict[str, str]:
    """Each of ``olds`` -> a new name with its distinctive words replaced consistently across ``olds`` (see
    ``_NAME_WORD``); the same guarantees as :func:`_fresh_names` (unique, never an old name, never containing one
    as a whole word), a name that cannot meet them (e.g. only generic words) getting a fresh name instead."""
    old_pattern = _word_pattern(olds)
    taken = {o.strip().casefold() for o in olds}

    def clash(name: str) -> bool:
        return name.strip().casefold() in taken or bool(old_pattern and old_pattern.search(name))

    words: dict[str, str] = {}  # casefolded old word -> new word (lower case)
    mapping: dict[str, str] = {}
    for old in olds:
        parts = []
        for w in _NAME_WORD.findall(old):
            key = w.casefold()
            if w.isascii() and w.isalpha() and len(w) >= 3 and key not in GENERIC_WORDS:
                while key not in words:
                    new_w = (_syllables(rng) + rng.choice(_ENDINGS)).lower()
                    if new_w != key and new_w not in words.values():
                        words[key] = new_w
                w = _recase(words[key], w)
            parts.append(w)
        new = "".join(parts)
        for _ in range(10_000):
            if not clash(new):
                break
            new = _new_name(rng)
        else:  # pragma: no cover - 10,000 collisions in a row do not happen
            raise RuntimeError(f"{where}: could not find a fresh name for {old!r}")
        taken.add(new.strip().casefold())
        mapping[old] = new
    return mapping


def _tool_part(name: str, where: str) -> str:
    try:
        return split_tool_name(name)[1]
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from exc


def _parse(entry: Entry, setting: str) -> Prompt:
    try:
        return parse_prompt(entry.prompts[setting], setting)
    except (PromptError, KeyError) as exc:
        raise DataError(f"entry {entry.entry_id} ({setting}): cannot parse the prompt: {exc}") from exc


def entry_providers(entry: Entry) -> list[str]:
    """Every provider (``<Tool>`` part) the entry names: history of all settings, candidates, ground truth,
    ``api_ground_truth``, ``apis_same_func`` and ``tool_comb`` (sorted; raises :class:`DataError` when a prompt
    cannot be parsed or a tool name is malformed)."""
    where = f"entry {entry.entry_id}"
    found: set[str] = set(map(str, entry.tool_comb))
    for setting in SETTINGS:
        prompt = _parse(entry, setting)
        found.update(_tool_part(h.tool_name, f"{where} ({setting}): history tool") for h in prompt.history)
        found.update(_tool_part(str(c.get("tool_name")), f"{where} ({setting}): candidate")
                     for c in prompt.candidates)
    found.update(_tool_part(str(c.get("tool_name")), f"{where}: apis_candidate") for c in entry.candidates)
    found.add(_tool_part(str(entry.ground_truth.get("tool_name")), f"{where}: api_call_ground_truth"))
    found.update(str(r["tool_name"]) for r in [entry.api_ground_truth, *entry.same_func] if "tool_name" in r)
    return sorted(found)


def provider_mapping(entry: Entry, seed: int) -> dict[str, str]:
    """Old provider name -> new name for ``entry`` (deterministic in ``seed`` and ``entry.entry_id``)."""
    return _fresh_names(entry_providers(entry), random.Random(f"petool-probe-names/{seed}/{entry.entry_id}"),
                        f"entry {entry.entry_id}")


def _fresh_names(olds: list[str], rng: random.Random, where: str) -> dict[str, str]:
    """Each of ``olds`` (in this order) -> a new made-up name: unique, never one of ``olds`` (case-insensitively)
    and never containing one as a whole word."""
    old_pattern = _word_pattern(olds)
    taken = {o.strip().casefold() for o in olds}
    mapping: dict[str, str] = {}
    for old in olds:
        for _ in range(10_000):
            new = _new_name(rng)
            if new.casefold() not in taken and not (old_pattern and old_pattern.search(new)):
                break
        else:  # pragma: no cover - 10,000 collisions in a row do not happen
            raise RuntimeError(f"{where}: could not find a fresh name for {old!r}")
        taken.add(new.casefold())
        mapping[old] = new
    return mapping


class _Renamer:
    """Applies one entry's mapping to tool names, description texts and candidate lists."""

    def __init__(self, mapping: dict[str, str], seed: int, entry_id: int | str) -> None:
        self.mapping = mapping
        self.text_map = {old.strip(): new for old, new in mapping.items()}
        self.pattern = _word_pattern(mapping)
        self.order_seed = f"petool-probe-order/{seed}/{entry_id}"

    def tool(self, name: str) -> str:
        cat, tool, api = split_tool_name(name)
        return f"<{cat}>.<{self.mapping[tool]}>.<{api}>"

    def text(self, s: str) -> str:
        return self.pattern.sub(lambda m: self.text_map[m.group(0)], s) if self.pattern else s

    def descriptions(self, obj: Any) -> Any:
        """A copy of ``obj`` with description strings renamed (any depth; ``Example`` is left as it is)."""
        if isinstance(obj, dict):
            return {k: (self.text(v) if k in DESCRIPTION_KEYS and isinstance(v, str)
                        else v if k == "Example" else self.descriptions(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.descriptions(v) for v in obj]
        return obj

    def record(self, rec: dict[str, Any]) -> dict[str, Any]:
        """An ``api_ground_truth`` / ``apis_same_func`` record: provider and descriptions renamed."""
        out = self.descriptions(rec)
        if "tool_name" in out:
            out["tool_name"] = self.mapping[str(out["tool_name"])]
        return out

    def candidates(self, cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Renamed and shuffled; lists of the same length get the same permutation."""
        out = [{**self.descriptions(c), "tool_name": self.tool(str(c["tool_name"]))} for c in cands]
        random.Random(self.order_seed).shuffle(out)
        return out


def rename_providers(entry: Entry, seed: int) -> Entry:
    """The same entry with every provider consistently renamed and the candidates shuffled (see the module
    docstring for exactly what changes). Each prompt is parsed, its history and candidates renamed and the prompt
    rendered again; task text and output-format text are kept byte for byte, and the result is checked to
    re-parse. Raises :class:`DataError` naming the entry (and setting) when a prompt cannot be parsed."""
    return _rename(entry, seed)[0]


def _rename(entry: Entry, seed: int) -> tuple[Entry, dict[str, str]]:
    mapping = provider_mapping(entry, seed)
    r = _Renamer(mapping, seed, entry.entry_id)
    prompts = dict(entry.prompts)
    for setting in SETTINGS:
        parsed = _parse(entry, setting)
        history = [replace(h, tool_call={**h.tool_call, "tool_name": r.tool(h.tool_name)}) for h in parsed.history]
        new = replace(parsed, history=history, candidates=r.candidates(parsed.candidates))
        text = new.render()
        check = parse_prompt(text, setting)
        if (check.task_text, check.format_text, len(check.history)) != (parsed.task_text, parsed.format_text,
                                                                      len(parsed.history)):
            raise DataError(f"entry {entry.entry_id} ({setting}): the renamed prompt does not re-parse the same way")
        prompts[setting] = text
    renamed = replace(
        entry,
        prompts=prompts,
        candidates=r.candidates(entry.candidates),
        ground_truth={**entry.ground_truth, "tool_name": r.tool(str(entry.ground_truth["tool_name"]))},
        api_ground_truth=r.record(entry.api_ground_truth),
        same_func=[r.record(a) for a in entry.same_func],
        tool_comb=[mapping[str(t)] for t in entry.tool_comb],
    )
    return renamed, mapping


def rename_test_set(entries: Iterable[Entry], seed: int) -> list[Entry]:
    """:func:`rename_providers` on every entry (each entry has its own names, all from ``seed``)."""
    return [rename_providers(e, seed) for e in entries]


ROW_COMPLETIONS = ("completion", "chosen", "rejected")  # the assistant turns of an SFT / DPO training row


RENAME_STYLES: tuple[str, ...] = ("name", "words")  # rename_row: a fresh name per provider | per distinctive word


def rename_row(row: dict[str, Any], seed: int, style: str = "name") -> dict[str, Any]:
    """A training row (``prompt`` = system + user messages; ``completion`` or ``chosen`` / ``rejected`` assistant
    turns; ``setting``; ``entry_id``) with every provider renamed consistently within the row and the candidates
    shuffled, as :func:`rename_providers` does to a test entry: the history's and the candidates' tool names (and
    whole-word mentions in the candidates' descriptions) and the ``tool_name`` of every assistant call. The names
    are drawn from ``(seed, entry_id, setting)``. Training on such rows makes a provider's name worthless as a
    prior: the only way to the right provider is the history (the probe's question, asked during training).
    ``style``: ``name`` gives every provider an unrelated fresh name (the test-side probe's renaming); ``words``
    replaces each distinctive word of the names consistently (``_word_names``), so near-duplicate providers —
    versions of one service — stay near-duplicates.

    Raises :class:`DataError` naming the row when its system prompt cannot be parsed or a tool name is malformed;
    an assistant turn that is not a JSON call is kept as it is."""
    import json

    if style not in RENAME_STYLES:
        raise ValueError(f"style must be one of {RENAME_STYLES}, got {style!r}")
    setting = str(row.get("setting", ""))
    where = f"row of entry {row.get('entry_id')} ({setting})"
    sys_idx = next((i for i, m in enumerate(row["prompt"]) if m["role"] == "system"), None)
    if sys_idx is None:
        raise DataError(f"{where}: no system message to rename")
    try:
        parsed = parse_prompt(row["prompt"][sys_idx]["content"], setting)
    except PromptError as exc:
        raise DataError(f"{where}: cannot parse the prompt: {exc}") from exc
    calls: dict[str, str] = {}  # assistant turn key -> its tool_name
    for key in ROW_COMPLETIONS:
        if key in row:
            try:
                name = json.loads(row[key][-1]["content"]).get("tool_name")
            except (ValueError, AttributeError, KeyError, IndexError, TypeError):
                continue
            if isinstance(name, str):
                calls[key] = name
    olds = {_tool_part(h.tool_name, f"{where}: history tool") for h in parsed.history}
    olds |= {_tool_part(str(c.get("tool_name")), f"{where}: candidate") for c in parsed.candidates}
    olds |= {_tool_part(n, f"{where}: {k}") for k, n in calls.items()}
    key = f"{row.get('entry_id')}/{setting}"
    names = _fresh_names if style == "name" else _word_names
    mapping = names(sorted(olds), random.Random(f"petool-train-names/{seed}/{key}"), where)
    r = _Renamer(mapping, seed, key)
    history = [replace(h, tool_call={**h.tool_call, "tool_name": r.tool(h.tool_name)}) for h in parsed.history]
    prompt = [dict(m) for m in row["prompt"]]
    prompt[sys_idx]["content"] = replace(parsed, history=history, candidates=r.candidates(parsed.candidates)).render()
    out = {**row, "prompt": prompt}
    for k, name in calls.items():
        turns = [dict(m) for m in row[k]]
        text = turns[-1]["content"]
        for ascii_only in (False, True):  # the name as the row wrote it (raw or \u-escaped)
            quoted = json.dumps(name, ensure_ascii=ascii_only)
            if quoted in text:
                text = text.replace(quoted, json.dumps(r.tool(name), ensure_ascii=ascii_only), 1)
                break
        else:  # pragma: no cover - a call parsed from this very text always contains its name in one form
            raise DataError(f"{where}: the {k} call's tool name is not found in its text")
        turns[-1]["content"] = text
        out[k] = turns
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m petool_lib.harness.probes",
                                 description="Write a provider-renamed copy of a test set (official JSON format).")
    ap.add_argument("--test", default=None, help="test file or directory (default: PETOOLBENCH_DIR / ../shared)")
    ap.add_argument("--out", required=True, help="output JSON file (a list of entries, as the official file)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="only the first N entries")
    args = ap.parse_args(argv)
    try:
        entries = load_test_set(args.test, limit=args.limit)
        renamed = [_rename(e, args.seed) for e in entries]
    except (DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = write_json(Path(args.out), [e.to_dict() for e, _ in renamed])
    print(f"renamed {len(renamed)} entries, {sum(len(m) for _, m in renamed)} provider names "
          f"(seed {args.seed}) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
