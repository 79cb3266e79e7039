"""Training rows: loading and checking SFT / DPO rows, and fitting them to a token budget on their way to the trainer.

Rows are TRL's conversational formats: SFT ``{"prompt", "completion"}``, DPO ``{"prompt", "chosen", "rejected"}``
(lists of chat messages), plus ``setting`` / ``entry_id`` bookkeeping. A row too long for the stage's token budget
goes through the inference context builder (:func:`petool_lib.core.context.fit_prompt`, the stage's ``context``
mode: evidence items first, descriptions shortened before one is dropped; never the query, a candidate or the format
text), so training sees prompts like the ones the model is evaluated on; a row that still cannot fit is skipped or
kept whole (the stage's ``too_long`` policy), and counted either way.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core.data import DataError, name_text
from ..core.context import COMPACT_MODES, fit_prompt
from ..core.prompts import PromptError, parse_prompt
from ..harness.probes import rename_row
from .contrast import flip_row, row_key
from .config import STAGES, StageConfig

STAGE_FILES: dict[str, str] = {"sft": "sft.jsonl", "dpo": "dpo.jsonl"}
STAGE_COLUMNS: dict[str, tuple[str, ...]] = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}


def _check_messages(value: Any, where: str, key: str, roles: Sequence[str] | None = None) -> None:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field {key!r} must be a non-empty list of chat messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise DataError(f"{where}: field {key!r}[{i}] must be an object with string 'role' and 'content'")
        if roles is not None and msg["role"] not in roles:
            raise DataError(f"{where}: field {key!r}[{i}] has role {msg['role']!r}, expected one of {list(roles)}")


def validate_row(row: Any, stage: str, where: str) -> dict[str, Any]:
    """Check one SFT / DPO row (TRL conversational prompt-completion / preference format)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: row is a {type(row).__name__}, expected an object")
    for key in STAGE_COLUMNS[stage]:
        if key not in row:
            raise DataError(f"{where}: missing field {key!r}")
        _check_messages(row[key], where, key, roles=None if key == "prompt" else ("assistant",))
    if not any(m["role"] == "user" for m in row["prompt"]):
        raise DataError(f"{where}: field 'prompt' has no user message")
    return row


def _read_jsonl_rows(path: Path, stage: str) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
            rows.append(validate_row(raw, stage, f"{path}:{lineno}"))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def load_rows(data: str | Path, stage: str) -> list[dict[str, Any]]:
    """Rows of a stage from ``DIR/sft.jsonl`` / ``DIR/dpo.jsonl``, a JSONL file, or the DatasetDict ``DIR/hf``.

    Every row is checked; an error names the file, the line (or split and index) and the field.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    path = Path(data)
    if path.is_dir() and (path / STAGE_FILES[stage]).is_file():
        path = path / STAGE_FILES[stage]
    if path.is_file():
        return _read_jsonl_rows(path, stage)
    hf_dir = path / "hf" if (path / "hf").is_dir() else path
    if (hf_dir / "dataset_dict.json").is_file():
        from datasets import load_from_disk

        dd = load_from_disk(str(hf_dir))
        if stage not in dd:
            raise DataError(f"{hf_dir}: DatasetDict has splits {list(dd)}, no {stage!r} split")
        return [validate_row(r, stage, f"{hf_dir}[{stage}][{i}]") for i, r in enumerate(dd[stage])]
    raise DataError(f"{Path(data)}: no {STAGE_FILES[stage]} and no DatasetDict (hf/) found")


def official_rows(entries: Sequence[Any], settings: Sequence[str] = ("preferred", "ratings", "chronological")) -> list[dict[str, Any]]:
    """SFT-format rows from official test entries (settings cycled), e.g. held-out rows for before/after samples.
    Each carries its decision ``case`` (:func:`~petool_lib.harness.cases.decision_case`), as synthesized rows do, so
    a stage that selects ``cases`` (the ``cpu`` profile's) takes them too."""
    from ..harness.cases import decision_case

    rows = []
    for i, e in enumerate(entries):
        s = settings[i % len(settings)]
        rows.append({
            "prompt": [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}],
            "completion": [{"role": "assistant", "content": json.dumps(e.ground_truth, ensure_ascii=False)}],
            "setting": s, "entry_id": e.entry_id, "case": decision_case(e, s),
        })
    return rows


# --- fitting rows to the token budget --------------------------------------------------------------------------


def count_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the chat-templated conversation (what the trainer sees)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _completions(row: dict[str, Any], stage: str) -> list[list[dict[str, str]]]:
    return [row["completion"]] if stage == "sft" else [row["chosen"], row["rejected"]]


@dataclass
class FitResult:
    """One row after :func:`fit_row`: the row to train on, its token count and what the context builder did."""

    row: dict[str, Any]
    tokens: int
    dropped: int = 0  # history items removed
    fits: bool = True  # False: too long even after the context builder (``row`` is the original)
    parsed: bool = True  # False: the system prompt is not a PEToolBench prompt, so it could not be fitted
    evidence_items: int = 0  # history items that carry evidence for the candidate list (when fitted) ...
    kept_evidence: int = 0  # ... and how many of them were kept
    description_limit: int | None = None  # characters per description after shortening; None: not shortened


def name_only(messages: list[dict[str, str]], where: str) -> list[dict[str, str]]:
    """An assistant completion cut after its tool name: ``{"tool_name": "NAME"`` (``StageConfig.target = "name"``)."""
    out = [dict(m) for m in messages]
    last = out[-1]
    try:
        name = json.loads(last["content"])["tool_name"]
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{where}: target 'name' needs a JSON call with a tool_name as the completion "
                        f"({type(exc).__name__}: {exc})") from None
    if not isinstance(name, str):
        raise DataError(f"{where}: target 'name': tool_name is {type(name).__name__}, not a string")
    last["content"] = name_text(name)
    return out


def fit_row(row: dict[str, Any], stage: str, tokenizer: Any, budget: int | None,
            context: str = "evidence") -> FitResult:
    """Make a row fit ``budget`` tokens with the inference context builder (:func:`~petool_lib.core.context.fit_prompt`).

    The token count is that of the full chat-templated conversation (system + user + assistant; for DPO the
    longer of chosen / rejected). Returns the (possibly) fitted row; ``fits`` is False when the builder cannot
    bring it under the budget, in which case the original row is returned untouched. ``compact`` rewrites every
    row (:func:`~petool_lib.core.context.compact_prompt`), within budget or not, as inference then does.
    """
    prompt = row["prompt"]
    sys_idx = next((i for i, m in enumerate(prompt) if m["role"] == "system"), None)
    query = next((m["content"] for m in prompt if m["role"] == "user"), "")
    completions = _completions(row, stage)

    def n_tokens(system_text: str | None) -> int:
        msgs = [dict(m) for m in prompt]
        if sys_idx is not None and system_text is not None:
            msgs[sys_idx]["content"] = system_text
        return max(count_tokens(tokenizer, msgs + c) for c in completions)

    n = n_tokens(None)
    if context not in COMPACT_MODES and (budget is None or n <= budget):
        return FitResult(row=row, tokens=n)
    if sys_idx is None:
        return FitResult(row=row, tokens=n, fits=False, parsed=False)
    try:
        parsed = parse_prompt(prompt[sys_idx]["content"])
    except PromptError:
        return FitResult(row=row, tokens=n, fits=False, parsed=False)
    fitted, report = fit_prompt(parsed, query, n_tokens, budget, context, tokens=n)
    if not report.fits or report.tokens_after is None:
        return FitResult(row=row, tokens=n, fits=False, evidence_items=report.evidence_items)
    new_prompt = [dict(m) for m in prompt]
    new_prompt[sys_idx]["content"] = fitted.render()
    return FitResult(row={**row, "prompt": new_prompt}, tokens=report.tokens_after, dropped=report.dropped_items,
                     evidence_items=report.evidence_items, kept_evidence=report.kept_evidence,
                     description_limit=report.description_limit)


@dataclass
class PrepStats:
    """What happened to the rows on their way to the trainer (saved in ``train_stats.json``)."""

    stage: str
    source_rows: int
    token_budget: int | None
    too_long_policy: str
    max_examples: int | None
    considered: int = 0  # rows looked at, in the balanced order, until ``max_examples`` were usable
    used: int = 0  # rows handed to the trainer (contrast rows included)
    trimmed_rows: int = 0  # used rows that lost history items ...
    history_items_dropped: int = 0  # ... and how many in all
    evidence_items: int = 0  # evidence items in the used rows' prompts (rows that had to be fitted) ...
    evidence_kept: int = 0  # ... and how many of them the context builder kept
    shortened_rows: int = 0  # used rows whose candidate descriptions were shortened
    other_settings: int = 0  # rows left out because the stage trains on other settings only (``settings``)
    other_cases: int = 0  # rows left out because the stage trains on other decision cases only (``cases``)
    too_long_skipped: int = 0  # too long even with an empty history: skipped (policy "skip") ...
    too_long_kept: int = 0  # ... or kept whole (policy "keep")
    unparsed_prompts: int = 0  # system prompts that are not PEToolBench prompts (not trimmable)
    renamed_rows: int = 0  # used rows whose providers were renamed (``rename_providers``)
    contrast_rows: int = 0  # used rows that are contrast rows (``contrast_rows``; on top of max_examples) ...
    contrast_skipped: int = 0  # ... and drawn rows that have none (training.contrast.flip_row returned None, or the
    # fitted contrast row's prompt is its source's: fitting dropped the items whose ratings / order differ)
    tokens_total: int = 0  # over the used rows
    tokens_max: int = 0
    by_setting: dict[str, int] = field(default_factory=dict)
    by_case: dict[str, int] = field(default_factory=dict)  # used rows per decision case (rows with a ``case``)
    entry_ids: list[Any] = field(default_factory=list)

    @property
    def not_considered(self) -> int:
        return self.source_rows - self.other_settings - self.other_cases - self.considered

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["not_considered"] = self.not_considered
        out["tokens_mean"] = round(self.tokens_total / self.used, 1) if self.used else 0.0
        return out

    def add(self, row: dict[str, Any], res: FitResult) -> None:
        """Count one row that goes to the trainer."""
        if res.dropped:
            self.trimmed_rows += 1
            self.history_items_dropped += res.dropped
        self.evidence_items += res.evidence_items
        self.evidence_kept += res.kept_evidence
        self.shortened_rows += res.description_limit is not None
        self.used += 1
        self.tokens_total += res.tokens
        self.tokens_max = max(self.tokens_max, res.tokens)
        setting = str(row.get("setting", ""))
        self.by_setting[setting] = self.by_setting.get(setting, 0) + 1
        if "case" in row:
            case = str(row["case"])
            self.by_case[case] = self.by_case.get(case, 0) + 1
        self.entry_ids.append(row.get("entry_id"))


def balanced_order(rows: Sequence[dict[str, Any]], seed: int) -> list[int]:
    """Indices of ``rows`` shuffled per setting (seeded) and interleaved, so any prefix is balanced."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(str(r.get("setting", "")), []).append(i)
    rng = random.Random(seed)
    for idx in groups.values():
        rng.shuffle(idx)
    order: list[int] = []
    queues = [groups[k] for k in sorted(groups)]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def _draw(seed: int, row: dict[str, Any], index: int) -> float:
    """A uniform number in [0, 1) fixed by the seed and the row (whether ``rename_providers`` renames it)."""
    return random.Random(f"petool-rename-row/{seed}/{row.get('entry_id', index)}/{row.get('setting', '')}").random()


def _contrast_draw(seed: int, row: dict[str, Any], index: int) -> float:
    """A uniform number in [0, 1) fixed by the seed and the row (whether ``contrast_rows`` adds its contrast row)."""
    return random.Random(f"petool-contrast-row/{seed}/{row.get('entry_id', index)}/{row.get('setting', '')}").random()


def prepare_rows(
    rows: Sequence[dict[str, Any]], stage: str, tokenizer: Any, cfg: StageConfig, seed: int = 0,
    rejected: dict[tuple[str, str], list[dict[str, str]]] | None = None,
) -> tuple[list[dict[str, Any]], PrepStats]:
    """Fit rows to ``cfg.token_budget`` (context builder), apply the too-long policy, cap at ``cfg.max_examples``.

    Rows are taken in a seeded, setting-balanced order until ``max_examples`` usable rows are found. Returned rows
    keep only the trainer's columns; skipped rows are counted, never silently lost. With ``cfg.contrast_rows`` a
    drawn row is followed by its contrast row (:func:`~petool_lib.training.contrast.flip_row`, renamed with the
    same names when the row is), fitted the same way; SFT rows find their rejected call in ``rejected``
    (:func:`~petool_lib.training.contrast.rejected_turns` of the DPO rows), which is then required.
    """
    if cfg.contrast_rows > 0 and stage == "sft" and rejected is None:
        raise DataError("sft: contrast_rows needs the rejected calls of the DPO rows (dpo.jsonl next to sft.jsonl)")
    from tqdm.auto import tqdm

    stats = PrepStats(stage=stage, source_rows=len(rows), token_budget=cfg.token_budget,
                      too_long_policy=cfg.too_long, max_examples=cfg.max_examples)
    if cfg.settings is not None:  # train on some settings only: the others are counted as filtered, not lost
        wanted = set(cfg.settings)
        kept = [r for r in rows if str(r.get("setting", "")) in wanted]
        stats.other_settings = len(rows) - len(kept)
        if not kept:
            raise DataError(f"{stage}: no row has a setting in {sorted(wanted)} (rows have "
                            f"{sorted({str(r.get('setting', '')) for r in rows})})")
        rows = kept
    if cfg.cases is not None:  # train on some decision cases only: the others are counted as filtered, not lost
        for i, r in enumerate(rows):
            if "case" not in r:
                raise DataError(f"{stage} row {r.get('entry_id', i)}/{r.get('setting', '')}: no 'case' field, which "
                                f"the stage's cases {list(cfg.cases)} select on (rows written by `synthesize` carry "
                                "it; synthesize the data again, or drop `cases`)")
        wanted = set(cfg.cases)
        kept = [r for r in rows if str(r["case"]) in wanted]
        stats.other_cases = len(rows) - len(kept)
        if not kept:
            raise DataError(f"{stage}: no row has a case in {sorted(wanted)} (rows have "
                            f"{sorted({str(r['case']) for r in rows})})")
        rows = kept
    out: list[dict[str, Any]] = []
    target = min(len(rows), cfg.max_examples) if cfg.max_examples else len(rows)
    with tqdm(total=target, desc=f"{stage}: fitting rows to {cfg.token_budget or 'any'} tokens", leave=False) as bar:
        for i in balanced_order(rows, seed):
            if cfg.max_examples is not None and len(out) - stats.contrast_rows >= cfg.max_examples:
                break
            row = rows[i]
            stats.considered += 1
            source = row
            renamed = cfg.rename_providers > 0 and _draw(seed, row, i) < cfg.rename_providers
            if renamed:
                row = rename_row(row, seed, cfg.rename_style)
            kept = _fit(row, i, stage, tokenizer, cfg, stats)
            if kept is None:
                continue
            out.append(kept)
            stats.renamed_rows += renamed
            bar.update(1)
            if cfg.contrast_rows > 0 and _contrast_draw(seed, source, i) < cfg.contrast_rows:
                flipped = flip_row(source, None if rejected is None else rejected.get(row_key(source)))
                if flipped is None:
                    stats.contrast_skipped += 1
                    continue
                if renamed:  # the same names and candidate order as its source row: a minimal pair
                    flipped = rename_row(flipped, seed, cfg.rename_style)
                kept = _fit(flipped, i, stage, tokenizer, cfg, stats, contrast_of=out[-1])
                if kept is not None:
                    out.append(kept)
                    stats.renamed_rows += renamed
    return out, stats


def _fit(row: dict[str, Any], i: int, stage: str, tokenizer: Any, cfg: StageConfig, stats: PrepStats,
         contrast_of: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """One row fitted and cut to the trainer's columns, counted in ``stats``; None when it is skipped (too long).

    ``contrast_of``: the fitted source row of this contrast row; if fitting left the two prompts identical (it dropped
    every item that differs), the contrast row would teach the opposite answer to the same prompt: skipped, counted
    in ``contrast_skipped``."""
    res = fit_row(row, stage, tokenizer, cfg.token_budget, cfg.context)
    if not res.parsed:
        stats.unparsed_prompts += 1
    if not res.fits:
        if cfg.too_long == "skip":
            stats.too_long_skipped += 1
            return None
        stats.too_long_kept += 1
    kept = {k: res.row[k] for k in STAGE_COLUMNS[stage]}
    if cfg.target == "name":
        where = f"{stage} row {row.get('entry_id', i)}/{row.get('setting', '')}"
        for k in STAGE_COLUMNS[stage][1:]:
            kept[k] = name_only(kept[k], where)
    if contrast_of is not None and kept["prompt"] == contrast_of["prompt"]:
        stats.contrast_skipped += 1
        return None
    stats.add(row, res)
    stats.contrast_rows += contrast_of is not None
    return kept
