"""Minimal pairs: does a model (or an adapter) tell a prompt from its contrast prompt?

The DPO rows of a training profile's stage are prepared the way training prepares them (the stage's seed, settings,
context mode, token budget, provider renaming, name-only target), with every drawn row followed by its contrast row
(:func:`~petool_lib.training.contrast.flip_row`: the same instruction, candidates and history items, only the
ratings / the order flipped, chosen and rejected swapped). For each row the model's margin
``log p(chosen) - log p(rejected)`` is computed; the report counts the positive margins and, per minimal pair, whether
BOTH prompts get a positive margin. A model that ignores the ratings / the order scores the two prompts of a pair
alike, and then a fixed liking between the two names wins exactly one of them: "both right" needs a model that
reads the history. ``--n`` source rows give at most ``n`` pairs (rows without a contrast row are counted, not paired).
The flip sensitivity, ``margin(row) + margin(its contrast row)`` averaged over the pairs (and per setting), says
how far the flip moves the choice at all: 0 for a model that ignores it (its two margins are opposite), positive
when it moves towards the new answer, negative when away — visible long before a pair is won outright.

Usage (``python -m petool_lib minimal-pairs``)::

    python -m petool_lib minimal-pairs --profile P --data D [--adapter A] [--stage sft] [--settings ratings]
        [--n 16] [--model smollm2] --out outputs/minimal_pairs.json

``--stage sft`` (the default) prepares the rows with the SFT stage's fields, so an SFT run with ``contrast_rows``,
the same ``--n`` as ``max_examples`` and the same settings trained on exactly these prompts (a memorisation check);
a fresh seed or data checks generalisation. A diagnostic, not an accuracy: report n with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core.io import write_json


@dataclass
class PairReport:
    """Margins of the prepared rows and what they say about the minimal pairs."""

    rows: int
    pairs: int  # minimal pairs (a row directly followed by its contrast row)
    positive: int  # rows with a positive margin
    both_right: int  # pairs whose two rows both have a positive margin
    mean_margin: float
    # per pair, margin(row) + margin(its contrast row): 0 for a model whose choice the flip does not move (the two
    # margins are then opposite), > 0 when the flip moves it towards the new answer; the mean over the pairs
    flip_sensitivity: float = 0.0
    sensitivity_by_setting: dict[str, float] = field(default_factory=dict)
    margins: list[float] = field(default_factory=list)


def pair_indices(rows: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """``(i, i + 1)`` for each row directly followed by its contrast row: the same ``entry_id``, chosen and rejected
    swapped (a row belongs to one pair at most)."""
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(rows) - 1:
        a, b = rows[i], rows[i + 1]
        if (a.get("entry_id") == b.get("entry_id") and a["chosen"] == b["rejected"]
                and a["rejected"] == b["chosen"]):
            out.append((i, i + 1))
            i += 2
        else:
            i += 1
    return out


def pair_report(rows: Sequence[dict[str, Any]], margins: Sequence[float]) -> PairReport:
    """Count positive margins and minimal pairs with both rows right (``margins[i]`` belongs to ``rows[i]``)."""
    if len(rows) != len(margins):
        raise ValueError(f"{len(rows)} rows but {len(margins)} margins")
    pairs = pair_indices(rows)
    sums: dict[str, list[float]] = {}
    for i, j in pairs:
        sums.setdefault(str(rows[i].get("setting", "")), []).append(float(margins[i] + margins[j]))
    every = [v for vs in sums.values() for v in vs]
    return PairReport(rows=len(rows), pairs=len(pairs), positive=sum(m > 0 for m in margins),
                      both_right=sum(margins[i] > 0 and margins[j] > 0 for i, j in pairs),
                      mean_margin=statistics.fmean(margins) if margins else 0.0,
                      flip_sensitivity=statistics.fmean(every) if every else 0.0,
                      sensitivity_by_setting={k: statistics.fmean(v) for k, v in sorted(sums.items())},
                      margins=[float(m) for m in margins])


def prepare_pairs(profile: Any, stage: str, data: str | Path, tokenizer: Any, n: int,
                  settings: Sequence[str] | None = None, seed: int = 0) -> tuple[list[dict[str, Any]], Any]:
    """The DPO rows of ``data``, prepared with ``stage``'s fields (a DPO row carries its own rejected call, so
    nothing else is needed), ``n`` source rows each followed by its contrast row when it has one; ``seed``: the
    training run's (``train --seed``, default 0). Returns the rows and the :class:`~petool_lib.training.PrepStats`."""
    from dataclasses import replace

    from ..training import load_rows, prepare_rows, stage_config

    cfg = replace(stage_config(profile, stage), max_examples=n, contrast_rows=1.0)
    if settings:
        cfg = replace(cfg, settings=tuple(settings))
    rows, stats = prepare_rows(load_rows(data, "dpo"), "dpo", tokenizer, cfg, seed)
    if len(stats.entry_ids) != len(rows):
        raise RuntimeError(f"{len(rows)} prepared rows but {len(stats.entry_ids)} entry ids")
    # the trainer's columns plus the entry id, which pairs a row with its contrast row, and the setting
    return [{**r, "entry_id": e, "setting": _setting(r)} for r, e in zip(rows, stats.entry_ids)], stats


def _setting(row: dict[str, Any]) -> str:
    """The setting a prepared row's system prompt is written for, read from its task text in any layout ("" when it
    is not a PEToolBench prompt)."""
    from ..core.prompts import PromptError, parse_prompt

    system = next((m["content"] for m in row["prompt"] if m["role"] == "system"), "")
    try:
        return parse_prompt(system).setting
    except PromptError:
        return ""


def measure_pairs(profile: Any, data: str | Path, model: str = "smollm2", adapter: str | None = None,
                  stage: str = "sft", n: int = 16, settings: Sequence[str] | None = None,
                  seed: int = 0) -> tuple[PairReport, Any]:
    """Prepare the pairs, score them with the base model (plus ``adapter``), return the report and the prep stats."""
    import torch

    from ..core import resolve_model
    from ..training import load_base_model, load_tokenizer, preference_margins

    base = resolve_model(model)
    tok = load_tokenizer(base)
    rows, stats = prepare_pairs(profile, stage, data, tok, n, settings, seed)
    net = load_base_model(base, "cpu")
    if adapter:
        from peft import PeftModel

        net = PeftModel.from_pretrained(net, adapter)
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        margins = preference_margins(net, tok, rows)
    return pair_report(rows, margins), stats


def main(argv: list[str] | None = None) -> int:
    from ..training import load_training_profile

    ap = argparse.ArgumentParser(prog="python -m petool_lib minimal-pairs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", required=True, help="training profile name or YAML path")
    ap.add_argument("--data", required=True, help="directory with dpo.jsonl (as written by `synthesize`)")
    ap.add_argument("--adapter", default=None, help="PEFT adapter directory; default: the base model")
    ap.add_argument("--model", default="smollm2", help="base model (smollm2 | tiny | path)")
    ap.add_argument("--stage", default="sft", choices=("sft", "dpo"), help="whose fields prepare the rows")
    ap.add_argument("--settings", default=None, help="comma list (default: the stage's settings)")
    ap.add_argument("--n", type=int, default=16, help="source rows (each followed by its contrast row)")
    ap.add_argument("--seed", type=int, default=0, help="the training run's seed (it draws the rows)")
    ap.add_argument("--out", required=True, help="JSON report")
    args = ap.parse_args(argv)
    settings = [s.strip() for s in args.settings.split(",")] if args.settings else None
    report, stats = measure_pairs(load_training_profile(args.profile), args.data, args.model, args.adapter,
                                  args.stage, args.n, settings, args.seed)
    out = {"profile": str(args.profile), "data": str(args.data), "adapter": args.adapter, "model": args.model,
           "stage": args.stage, "n": args.n, "seed": args.seed, **asdict(report),
           "rows_by_setting": stats.by_setting, "contrast_skipped": stats.contrast_skipped}
    write_json(args.out, out)
    print(json.dumps({k: v for k, v in out.items() if k != "margins"}))
    if report.pairs == 0:
        print("no minimal pair: no drawn row has a contrast row (preferred-only rows have none)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
