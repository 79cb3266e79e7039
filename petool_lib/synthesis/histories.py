"""Step 4, interaction histories in the official structure, and the structure measurements that check it.

Measured on the official test set (``measure_structure(load_test_set())``, 1,000 entries):

- the full history (``history_length``, up to 100) holds calls of *distinct* APIs of the user's preferred tools
  (``tool_comb``); none belongs to the target's functional group; the prompt shows its last (at most) 20 items;
- rating-integrated: 2-5 items rated 0 (2: 194, 3: 107, 4: 19, 5: 680 entries), all calls of distinct APIs of one
  non-preferred provider of the target's group (in 727/1,000 entries one of them is that provider's member of the
  group), plus the most recent ``20 - n0`` preferred items rated 1, shuffled together;
- chronological: the same items without ratings, the rated-0 items first (the old tool), then the rated-1 items in
  their preferred-history order.

The constants below are those measurements; :func:`measure_structure` recomputes them for any test file, which is
how the synthesized split is compared with the official one.
"""

from __future__ import annotations

import json
import random
import statistics
from collections import Counter
from typing import Any, Sequence

from ..core.data import Entry, provider_of, split_tool_name
from ..core.prompts import HistoryItem, parse_prompt
from ..harness.cases import decision_cases

PROMPT_HISTORY_LIMIT = 20
RATED0_COUNTS: dict[int, int] = {2: 194, 3: 107, 4: 19, 5: 680}
P_REJECTED_GROUP_API = 0.727
# full history length (official ``history_length``) in bins of ten: (low, high, entries)
HISTORY_LENGTH_BINS: tuple[tuple[int, int, int], ...] = (
    (2, 9, 20), (10, 19, 51), (20, 29, 85), (30, 39, 96), (40, 49, 126), (50, 59, 169), (60, 69, 157),
    (70, 79, 154), (80, 89, 106), (90, 100, 36),
)
# preferred tools per user (official ``num_tools_combined``) in bins of five: (low, high, entries)
TOOL_COMB_BINS: tuple[tuple[int, int, int], ...] = (
    (1, 4, 20), (5, 9, 76), (10, 14, 113), (15, 19, 149), (20, 24, 151), (25, 29, 179), (30, 34, 221), (35, 37, 91),
)
# distractors among the official candidates that are among the 50 APIs most similar to the query (MiniLM)
HARD_DISTRACTORS: dict[int, int] = {2: 47, 3: 343, 4: 303, 5: 267}


def weighted_choice(rng: random.Random, weights: dict[int, int]) -> int:
    keys = sorted(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def sample_history_length(rng: random.Random) -> int:
    lo, hi, _ = rng.choices(HISTORY_LENGTH_BINS, weights=[b[2] for b in HISTORY_LENGTH_BINS])[0]
    return rng.randint(lo, hi)


def sample_tool_comb_size(rng: random.Random) -> int:
    lo, hi, _ = rng.choices(TOOL_COMB_BINS, weights=[b[2] for b in TOOL_COMB_BINS])[0]
    return rng.randint(lo, hi)


def sample_rated0_count(rng: random.Random) -> int:
    return weighted_choice(rng, RATED0_COUNTS)


def call_item(instruction: str, tool_name: str, parameters: dict[str, Any], rating: int | None = None) -> HistoryItem:
    return HistoryItem(instruction=instruction, tool_call={"tool_name": tool_name, "parameters": parameters}, rating=rating)


def _strip(item: HistoryItem, rating: int | None) -> HistoryItem:
    return HistoryItem(instruction=item.instruction, tool_call=item.tool_call, rating=rating)


def prompt_histories(full: Sequence[HistoryItem], rejected: Sequence[HistoryItem], rng: random.Random,
                     limit: int = PROMPT_HISTORY_LIMIT) -> dict[str, list[HistoryItem]]:
    """The three settings' prompt histories from the full preferred history (oldest first) and the rated-0 calls."""
    preferred = [_strip(h, None) for h in full[-limit:]] if limit > 0 else []
    n1 = max(0, min(len(preferred), limit - len(rejected)))
    recent = preferred[len(preferred) - n1:]
    zeros = [_strip(h, 0) for h in rejected]
    ratings = [_strip(h, 1) for h in recent] + zeros
    rng.shuffle(ratings)
    old = [_strip(h, None) for h in rejected]
    rng.shuffle(old)
    chronological = old + recent
    return {"preferred": preferred, "ratings": ratings, "chronological": chronological}


def _share(values: list[bool]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0


def _hist(values: list[int]) -> dict[str, int]:
    c = Counter(values)
    return {str(k): c[k] for k in sorted(c)}


def group_size_counts(entries: Sequence[Entry]) -> dict[str, int]:
    """``{size: entries}``: how many entries have a target functional group of each size (sizes ascending)."""
    return _hist([len(e.same_func) for e in entries])


def measure_structure(entries: Sequence[Entry]) -> dict[str, Any]:
    """Structure statistics of a test set (official or synthesized), for side-by-side comparison."""
    n_cand, hlen, plen, n0, r0_group, target_prov, hist_in_group, gt_in_hist, comb = ([] for _ in range(9))
    r0_one_tool, r0_distinct, chrono_ok, cand_groups = [], [], [], []
    per_group: dict[str, Counter] = {}
    cases = decision_cases(entries)
    for e in entries:
        P = parse_prompt(e.prompts["preferred"], "preferred")
        R = parse_prompt(e.prompts["ratings"], "ratings")
        C = parse_prompt(e.prompts["chronological"], "chronological")
        group = set(e.group_names)
        gt = e.ground_truth["tool_name"]
        n_cand.append(len(e.candidates))
        hlen.append(e.history_length)
        plen.append(len(P.history))
        zeros = [h for h in R.history if h.rating == 0]
        n0.append(len(zeros))
        r0_group.append(any(h.tool_name in group for h in zeros))
        r0_one_tool.append(len({provider_of(h.tool_name) for h in zeros}) <= 1)
        r0_distinct.append(len({h.tool_name for h in zeros}) == len(zeros))
        try:
            gt_prov = provider_of(gt)
            target_prov.append(any(provider_of(h.tool_name) == gt_prov for h in P.history))
        except ValueError:
            target_prov.append(False)
        hist_in_group.append(sum(h.tool_name in group for h in P.history))
        gt_in_hist.append(any(h.tool_name == gt for h in P.history + R.history))
        comb.append(len(e.tool_comb))
        pat = [h.tool_name for h in C.history]
        zero_names = [h.tool_name for h in zeros]
        chrono_ok.append(sorted(pat[:len(zeros)]) == sorted(zero_names))
        cand_groups.append(all(n in e.candidate_names for n in group))
        per_group.setdefault(e.func, Counter())[gt] += 1
    shares = [max(c.values()) / sum(c.values()) for c in per_group.values() if sum(c.values()) >= 5]
    return {
        "entries": len(entries),
        "candidates": _hist(n_cand),
        "group_size": group_size_counts(entries),
        "prompt_history_items": {"max": max(plen, default=0), "median": statistics.median(plen) if plen else 0},
        "history_length": {"max": max(hlen, default=0), "median": statistics.median(hlen) if hlen else 0},
        "rated0_items": _hist(n0),
        "rated0_one_provider": _share(r0_one_tool),
        "rated0_distinct_apis": _share(r0_distinct),
        "rated0_includes_group_api": _share(r0_group),
        "chronological_rated0_first": _share(chrono_ok),
        "target_provider_in_history": _share(target_prov),
        "group_apis_in_history": _share([x > 0 for x in hist_in_group]),
        "target_in_history": _share(gt_in_hist),
        "whole_group_in_candidates": _share(cand_groups),
        "tool_comb_size": {"max": max(comb, default=0), "median": statistics.median(comb) if comb else 0},
        "groups": len(per_group),
        "majority_provider_share": round(statistics.mean(shares), 4) if shares else None,
        # what the history shows per setting (harness.cases: absent / visible / switch / avoid / conflict) and the
        # ceiling of reading it with the functional group known
        "decision_cases": {s: {c: v for c, v in d["shares"].items() if v} for s, d in cases.items()},
        "history_oracle": {s: d["oracle"] for s, d in cases.items()},
    }


def structure_table(structure: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Columns for a side-by-side table of a manifest's ``structure`` (official, synthesized test, synthesized train;
    missing sets left out), nested values as JSON text."""
    names = (("official", "official"), ("synthesized test", "synthesized_test"), ("synthesized train", "synthesized_train"))
    return {label: {k: json.dumps(v) if isinstance(v, dict) else v for k, v in structure[key].items()}
            for label, key in names if structure.get(key)}


def category_of(name: str) -> str:
    return split_tool_name(name)[0]
