"""Step 6, outputs: the official combined test file, TRL SFT/DPO rows, an HF ``datasets`` DatasetDict, the
LLaMA-Factory export the reference configs expect, and the manifest's file hashes.

File contents never hold timestamps or absolute paths, so the same inputs and seed give byte-identical files. Files
are written with :mod:`petool_lib.core.io` (atomically).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from ..core.data import SETTINGS, Entry
from ..core.io import write_json
from ..core.prompts import dumps

SETTING_LETTER = {"preferred": "p", "ratings": "r", "chronological": "c"}


def call_text(tool_name: str, parameters: dict[str, Any]) -> str:
    """A tool call as the model must produce it: one line of JSON."""
    return dumps({"tool_name": tool_name, "parameters": parameters})


def sft_rows(entries: Sequence[Entry], settings: Sequence[str] = SETTINGS) -> list[dict[str, Any]]:
    """TRL conversational prompt-completion rows: system = the setting's prompt, user = the query."""
    rows = []
    for s in settings:
        for e in entries:
            rows.append({
                "prompt": [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}],
                "completion": [{"role": "assistant", "content": call_text(e.ground_truth["tool_name"], e.ground_truth["parameters"])}],
                "setting": s, "entry_id": e.entry_id,
            })
    return rows


def dpo_rows(entries: Sequence[Entry], rejected: dict[int, dict[str, Any]], settings: Sequence[str] = SETTINGS
             ) -> list[dict[str, Any]]:
    """TRL conversational preference rows: chosen = the ground-truth call, rejected = the same call on a
    non-preferred member of the target's group (``rejected[entry_id] = {"tool_name", "parameters"}``)."""
    rows = []
    for s in settings:
        for e in entries:
            rej = rejected[e.entry_id]
            rows.append({
                "prompt": [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}],
                "chosen": [{"role": "assistant", "content": call_text(e.ground_truth["tool_name"], e.ground_truth["parameters"])}],
                "rejected": [{"role": "assistant", "content": call_text(rej["tool_name"], rej["parameters"])}],
                "setting": s, "entry_id": e.entry_id,
            })
    return rows


def write_llamafactory(root: Path, sft: Sequence[dict[str, Any]], dpo: Sequence[dict[str, Any]]) -> list[Path]:
    """``dataset_sft/`` and ``dataset_dpo/`` with ``dataset_info.json`` and alpaca-format files named as in the
    reference configs (``user_entries_sft_p`` ..., ``user_entries_dpo_p`` ... with ``ranking: true``)."""
    written = []
    info_sft: dict[str, Any] = {}
    info_dpo: dict[str, Any] = {}
    for s, letter in SETTING_LETTER.items():
        name = f"user_entries_sft_{letter}"
        rows = [{"instruction": r["prompt"][0]["content"], "input": r["prompt"][1]["content"],
                 "output": r["completion"][0]["content"]} for r in sft if r["setting"] == s]
        written.append(write_json(root / "dataset_sft" / f"{name}.json", rows))
        info_sft[name] = {"file_name": f"{name}.json", "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
        name = f"user_entries_dpo_{letter}"
        rows = [{"instruction": r["prompt"][0]["content"], "input": r["prompt"][1]["content"],
                 "chosen": r["chosen"][0]["content"], "rejected": r["rejected"][0]["content"]} for r in dpo if r["setting"] == s]
        written.append(write_json(root / "dataset_dpo" / f"{name}.json", rows))
        info_dpo[name] = {"file_name": f"{name}.json", "ranking": True,
                          "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}}
    written.append(write_json(root / "dataset_sft" / "dataset_info.json", info_sft, indent=2))
    written.append(write_json(root / "dataset_dpo" / "dataset_info.json", info_dpo, indent=2))
    return written


def write_hf(root: Path, sft: Sequence[dict[str, Any]], dpo: Sequence[dict[str, Any]], test: Sequence[Entry]) -> Path:
    """A ``datasets`` DatasetDict on disk with splits ``sft``, ``dpo`` and ``test`` (nested tool docs as JSON text)."""
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
    disable_progress_bar()
    try:
        DatasetDict(splits).save_to_disk(str(root))
    finally:
        enable_progress_bar()
    return root


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
