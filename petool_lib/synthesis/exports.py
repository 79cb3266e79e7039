"""Step 6, outputs: the official combined test file, TRL SFT/DPO rows, an HF ``datasets`` DatasetDict, the
LLaMA-Factory export the reference configs expect (system = setting prompt, user = query, prompts fitted to the
recipes' ``cutoff_len`` by the context builder: :func:`fit_export_prompts`; recipes in ``configs/llamafactory/``),
the manifest's file hashes, and who owns the output directory.

File contents never hold timestamps or absolute paths, so the same inputs and seed give byte-identical files. Files
are written with :mod:`petool_lib.core.io` (atomically).

The output directory (:func:`claim_out_dir`, checked before any work): an absent or empty directory is used as is;
a previous synthesis run (recognised by its ``manifest.json``, or notebook 01's ``groups.json``) is rerun in place,
removing only the files that run wrote and that synthesis writes (:func:`is_synthesis_output`); any other non-empty
directory is refused unless ``overwrite``, and then only the files synthesis writes are replaced. Nothing else in it
is touched, and the manifest lists only the files the run wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core.context import fit_prompt, make_messages, template_ids
from ..core.data import SETTINGS, Entry
from ..core.io import OutputError, ensure_writable_dir, write_json
from ..core.prompts import PromptError, dumps, parse_prompt
from ..harness.cases import decision_case

SETTING_LETTER = {"preferred": "p", "ratings": "r", "chronological": "c"}


def call_text(tool_name: str, parameters: dict[str, Any]) -> str:
    """A tool call as the model must produce it: one line of JSON."""
    return dumps({"tool_name": tool_name, "parameters": parameters})


def row_cases(entries: Sequence[Entry], settings: Sequence[str] = SETTINGS) -> dict[tuple[Any, str], str]:
    """``{(entry_id, setting): decision case}`` (:func:`~petool_lib.harness.cases.decision_case`: what the history
    shows about the answer's provider), computed once for :func:`sft_rows` and :func:`dpo_rows`."""
    return {(e.entry_id, s): decision_case(e, s) for s in settings for e in entries}


def sft_rows(entries: Sequence[Entry], settings: Sequence[str] = SETTINGS,
             cases: dict[tuple[Any, str], str] | None = None) -> list[dict[str, Any]]:
    """TRL conversational prompt-completion rows: system = the setting's prompt, user = the query; ``case``: the
    row's decision case (``cases`` from :func:`row_cases`, computed when not given), which a training stage can
    select on (``StageConfig.cases``)."""
    cases = row_cases(entries, settings) if cases is None else cases
    rows = []
    for s in settings:
        for e in entries:
            rows.append({
                "prompt": [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}],
                "completion": [{"role": "assistant", "content": call_text(e.ground_truth["tool_name"], e.ground_truth["parameters"])}],
                "setting": s, "entry_id": e.entry_id, "case": cases[(e.entry_id, s)],
            })
    return rows


def dpo_rows(entries: Sequence[Entry], rejected: dict[int, dict[str, Any]], settings: Sequence[str] = SETTINGS,
             cases: dict[tuple[Any, str], str] | None = None) -> list[dict[str, Any]]:
    """TRL conversational preference rows: chosen = the ground-truth call, rejected = the same call on a
    non-preferred member of the target's group (``rejected[entry_id] = {"tool_name", "parameters"}``); ``case`` as
    in :func:`sft_rows`."""
    cases = row_cases(entries, settings) if cases is None else cases
    rows = []
    for s in settings:
        for e in entries:
            rej = rejected[e.entry_id]
            rows.append({
                "prompt": [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}],
                "chosen": [{"role": "assistant", "content": call_text(e.ground_truth["tool_name"], e.ground_truth["parameters"])}],
                "rejected": [{"role": "assistant", "content": call_text(rej["tool_name"], rej["parameters"])}],
                "setting": s, "entry_id": e.entry_id, "case": cases[(e.entry_id, s)],
            })
    return rows


LF_CUTOFF_LEN = 4096  # the recipes' ``cutoff_len`` (configs/llamafactory/*.yaml): prompt + answer tokens
LF_SFT_COLUMNS = {"system": "system", "prompt": "instruction", "response": "output"}
LF_DPO_COLUMNS = {"system": "system", "prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}


@dataclass
class LFFitStats:
    """What :func:`fit_export_prompts` did (the manifest's ``llamafactory``): one prompt per (entry, setting),
    shared by the SFT and DPO rows."""

    cutoff_len: int | None
    tokenizer: str | None
    context: str = "evidence"
    prompts: int = 0
    fitted: int = 0  # prompts the context builder changed to fit the budget ...
    history_items_dropped: int = 0  # ... history items it dropped in all ...
    shortened: int = 0  # ... prompts whose candidate descriptions it shortened
    too_long: int = 0  # prompts that do not fit even after the context builder: left out of the export ...
    too_long_ids: list[list[Any]] = field(default_factory=list)  # ... as [entry_id, setting]
    unparsed: int = 0  # over-budget system prompts that are not PEToolBench prompts (counted in too_long)
    tokens_max: int = 0  # over the exported prompts (prompt + longest answer)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checked": self.cutoff_len is not None and self.tokenizer is not None}


def load_tokenizer(name: str) -> Any:
    """A tokenizer by model name (``smollm2`` / ``tiny`` resolve to the local caches) or HF id / path. Raises
    ``RuntimeError`` naming ``--lf-tokenizer none`` (export unfitted) when it cannot be loaded."""
    from ..core.models import load_tokenizer as load_model_tokenizer

    try:
        return load_model_tokenizer(name)
    except (OSError, ImportError, ValueError) as exc:
        raise RuntimeError(f"LLaMA-Factory export: cannot load tokenizer {name!r} to fit its prompts ({exc}); pass "
                           "--lf-tokenizer NAME (smollm2 | tiny | HF id / path) or --lf-tokenizer none") from exc


def fit_export_prompts(sft: Sequence[dict[str, Any]], dpo: Sequence[dict[str, Any]], tokenizer: Any,
                       cutoff_len: int | None = LF_CUTOFF_LEN, tokenizer_name: str | None = None,
                       context: str = "evidence") -> tuple[list[dict[str, Any]], list[dict[str, Any]], LFFitStats]:
    """SFT / DPO rows whose prompts fit ``cutoff_len`` tokens with their longest answer, for LLaMA-Factory.

    LLaMA-Factory cuts an over-long example from the end of the prompt (the user turn: the query). Here the whole
    request -- system + user through the tokenizer's chat template, plus the longest of the row's answers (SFT
    completion, DPO chosen / rejected) and one end-of-turn token -- is counted, and a prompt over ``cutoff_len``
    goes through the inference context builder (:func:`~petool_lib.core.context.fit_prompt`: evidence history
    items kept first, descriptions shortened before one is dropped; never the query, a candidate or the format
    text). A prompt that still does not fit is left out of both SFT and DPO rows and counted (never cut).
    ``tokenizer`` None or ``cutoff_len`` None: rows are returned unchanged, stats say ``checked: false``.
    The rows themselves (``sft.jsonl`` / ``dpo.jsonl``) are not changed: only the export's copies.
    """
    stats = LFFitStats(cutoff_len if tokenizer is not None else None, tokenizer_name if tokenizer is not None else None,
                       context)
    answers: dict[tuple[Any, str], list[str]] = {}
    prompts: dict[tuple[Any, str], list[dict[str, str]]] = {}
    for r in sft:
        key = (r["entry_id"], r["setting"])
        prompts.setdefault(key, r["prompt"])
        answers.setdefault(key, []).append(r["completion"][0]["content"])
    for r in dpo:
        key = (r["entry_id"], r["setting"])
        prompts.setdefault(key, r["prompt"])
        answers.setdefault(key, []).extend([r["chosen"][0]["content"], r["rejected"][0]["content"]])
    stats.prompts = len(prompts)
    if tokenizer is None or cutoff_len is None:
        return list(sft), list(dpo), stats

    fitted: dict[tuple[Any, str], list[dict[str, str]] | None] = {}
    for key, prompt in prompts.items():
        system, query = prompt[0]["content"], prompt[1]["content"]
        reserve = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers[key]) + 1

        def count(text: str) -> int:
            return len(template_ids(tokenizer, make_messages(text, query))) + reserve

        n = count(system)
        if n <= cutoff_len:
            fitted[key] = prompt
            stats.tokens_max = max(stats.tokens_max, n)
            continue
        try:
            parsed = parse_prompt(system, key[1])
        except PromptError:
            stats.unparsed += 1
            parsed = None
        report = None
        if parsed is not None:
            new, report = fit_prompt(parsed, query, count, cutoff_len, context, tokens=n)
        if report is None or not report.fits or report.tokens_after is None:
            fitted[key] = None
            stats.too_long += 1
            stats.too_long_ids.append([key[0], key[1]])
            continue
        fitted[key] = make_messages(new.render(), query)
        stats.fitted += 1
        stats.history_items_dropped += report.dropped_items
        stats.shortened += int(report.description_limit is not None)
        stats.tokens_max = max(stats.tokens_max, report.tokens_after)

    def refit(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            p = fitted[(r["entry_id"], r["setting"])]
            if p is not None:
                out.append(r if p is r["prompt"] else {**r, "prompt": p})
        return out

    return refit(sft), refit(dpo), stats


def write_llamafactory(root: Path, sft: Sequence[dict[str, Any]], dpo: Sequence[dict[str, Any]]) -> list[Path]:
    """``dataset_sft/`` and ``dataset_dpo/`` with ``dataset_info.json`` and alpaca-format files named as in the
    reference configs (``user_entries_sft_p`` ..., ``user_entries_dpo_p`` ... with ``ranking: true``).

    Each row keeps our trainer's two messages: ``system`` = the setting's prompt (the ``system`` column),
    ``instruction`` = the query (the ``prompt`` column, LLaMA-Factory's user turn; no ``query`` column, so nothing
    is joined onto it). Pass rows fitted by :func:`fit_export_prompts` so LLaMA-Factory's ``cutoff_len`` never cuts
    one (see ``configs/llamafactory/``)."""
    written = []
    info_sft: dict[str, Any] = {}
    info_dpo: dict[str, Any] = {}
    for s, letter in SETTING_LETTER.items():
        name = f"user_entries_sft_{letter}"
        rows = [{"system": r["prompt"][0]["content"], "instruction": r["prompt"][1]["content"],
                 "output": r["completion"][0]["content"]} for r in sft if r["setting"] == s]
        written.append(write_json(root / "dataset_sft" / f"{name}.json", rows))
        info_sft[name] = {"file_name": f"{name}.json", "formatting": "alpaca", "columns": dict(LF_SFT_COLUMNS)}
        name = f"user_entries_dpo_{letter}"
        rows = [{"system": r["prompt"][0]["content"], "instruction": r["prompt"][1]["content"],
                 "chosen": r["chosen"][0]["content"], "rejected": r["rejected"][0]["content"]}
                for r in dpo if r["setting"] == s]
        written.append(write_json(root / "dataset_dpo" / f"{name}.json", rows))
        info_dpo[name] = {"file_name": f"{name}.json", "formatting": "alpaca", "ranking": True,
                          "columns": dict(LF_DPO_COLUMNS)}
    written.append(write_json(root / "dataset_sft" / "dataset_info.json", info_sft, indent=2))
    written.append(write_json(root / "dataset_dpo" / "dataset_info.json", info_dpo, indent=2))
    return written


def write_hf(root: Path, sft: Sequence[dict[str, Any]], dpo: Sequence[dict[str, Any]], test: Sequence[Entry]
             ) -> list[Path]:
    """A ``datasets`` DatasetDict on disk with splits ``sft``, ``dpo`` and ``test`` (nested tool docs as JSON text).

    Saved into a staging folder beside ``root`` and moved in file by file, so the files written are known (returned)
    and nothing else under ``root`` is touched."""
    from datasets import Dataset, DatasetDict
    from datasets.utils.logging import disable_progress_bar, enable_progress_bar

    test_rows = [{
        "entry_id": e.entry_id, "query": e.query,
        **{f"instruction_{s}": e.prompts[s] for s in SETTINGS},
        "api_call_ground_truth": dumps(e.ground_truth), "func": e.func, "tool_comb": list(e.tool_comb),
        "history_length": e.history_length,
    } for e in test]
    splits = {}
    if sft:
        splits["sft"] = Dataset.from_list(list(sft))
    if dpo:
        splits["dpo"] = Dataset.from_list(list(dpo))
    if test_rows:
        splits["test"] = Dataset.from_list(test_rows)
    root.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}.staging-") as staging:
        disable_progress_bar()
        try:
            DatasetDict(splits).save_to_disk(staging)
        finally:
            enable_progress_bar()
        for src in sorted(p for p in Path(staging).rglob("*") if p.is_file()):
            dst = root / src.relative_to(staging)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            written.append(dst)
    return written


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_hashes(root: Path, exclude: Sequence[str] = ("manifest.json",)) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (sorted), except ``exclude``."""
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and str(p.relative_to(root)) not in exclude}


def written_hashes(root: Path, paths: Sequence[Path]) -> dict[str, str]:
    """``{relative path: sha256}`` of the files a run wrote (sorted by path; POSIX separators)."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(set(paths))}


# --- who owns the output directory ---------------------------------------------------------------------------------

MANIFEST = "manifest.json"
_TOP_FILES = {"tools.jsonl", "groups.json", "users.jsonl", "test.json", "sft.jsonl", "dpo.jsonl", MANIFEST}
_HF_FILE = re.compile(r"hf/(dataset_dict\.json|(sft|dpo|test)/(data-\d{5}-of-\d{5}\.arrow|dataset_info\.json"
                      r"|state\.json))")
_LF_FILE = re.compile(r"llamafactory/dataset_(sft|dpo)/(user_entries_(sft|dpo)_[prc]\.json|dataset_info\.json)")


class OutputDirError(ValueError):
    """``--out`` cannot be used (not writable, or a non-empty directory synthesis does not own)."""


def is_synthesis_output(rel: str) -> bool:
    """Whether ``rel`` (a POSIX path relative to the output directory) is a file synthesis writes."""
    return rel in _TOP_FILES or bool(_HF_FILE.fullmatch(rel) or _LF_FILE.fullmatch(rel))


PREPARATION_FILES = ("tools.jsonl", "groups.json")  # what notebook 01 (``write_tool_files``) writes


def previous_run_files(out: Path) -> dict[str, str] | None:
    """The files a previous run wrote into ``out`` (``{relative path: sha256}``): its manifest's ``files``, or,
    without a manifest, notebook 01's tool files (recognised by ``groups.json``; hashes empty). None when ``out``
    holds neither."""
    try:
        m = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _preparation_files(out)
    except (OSError, ValueError):
        return None
    if not (isinstance(m, dict) and {"seed", "parameters", "counts", "files"} <= set(m)
            and isinstance(m["files"], dict)):
        return None
    return {str(k): str(v) for k, v in m["files"].items()}


def _preparation_files(out: Path) -> dict[str, str] | None:
    try:
        groups = json.loads((out / "groups.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(groups, dict) and set(groups) == {"threshold", "embedding_backend", "max_size",
                                                          "size_distribution", "groups"}):
        return None
    return {rel: "" for rel in PREPARATION_FILES if (out / rel).is_file()}


def check_writable(out: Path) -> None:
    """Raise :class:`OutputDirError` unless ``out`` (or the folder it would be created in) takes a new file."""
    try:
        ensure_writable_dir(out, "--out")
    except OutputError as exc:
        raise OutputDirError(str(exc)) from None


@dataclass
class OutDir:
    """A checked output directory: ``stale`` = the previous run's files (relative) to remove before writing."""

    root: Path
    stale: list[str] = field(default_factory=list)


def claim_out_dir(out: str | Path, overwrite: bool = False) -> OutDir:
    """Check ``out`` before any work (see the module docstring); raises :class:`OutputDirError`."""
    root = Path(out)
    check_writable(root)
    if not root.is_dir() or not any(root.iterdir()):
        return OutDir(root)
    files = previous_run_files(root)
    if files is None:
        if not overwrite:
            raise OutputDirError(
                f"--out {root}: directory is not empty and is not a previous synthesis run (no manifest.json); "
                "choose an empty directory or pass --overwrite (replaces only the files synthesis writes)")
        return OutDir(root)
    return OutDir(root, sorted(r for r in files if is_synthesis_output(r) and (root / r).is_file()))


def remove_stale(out: OutDir) -> int:
    """Remove the previous run's files (only those :func:`is_synthesis_output` accepts) and the folders this
    empties; returns how many files were removed."""
    root = out.root.resolve()
    dirs: set[Path] = set()
    n = 0
    for rel in out.stale:
        p = root / rel
        if not is_synthesis_output(rel) or p.is_symlink() or not p.is_file() or root not in p.resolve().parents:
            continue  # not ours, or reached through a link out of the directory
        p.unlink()
        n += 1
        dirs.update(d for d in p.parents if root in d.parents)
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        try:
            d.rmdir()  # only when empty
        except OSError:
            pass
    return n
