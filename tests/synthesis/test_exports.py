"""Outputs: TRL SFT/DPO rows, the LLaMA-Factory export, the HF DatasetDict and the manifest's file hashes."""

from __future__ import annotations

import json
from pathlib import Path

from petool_lib.core.data import SETTINGS, provider_of
from petool_lib.core.prompts import parse_prompt
from petool_lib.synthesis.exports import file_hashes


def test_sft_dpo_and_exports(sample_run: tuple[Path, dict]) -> None:
    out, m = sample_run
    sft = [json.loads(x) for x in (out / "sft.jsonl").read_text().splitlines()]
    dpo = [json.loads(x) for x in (out / "dpo.jsonl").read_text().splitlines()]
    assert len(sft) == len(dpo) == 3 * 12
    assert [r["setting"] for r in sft] == [s for s in SETTINGS for _ in range(12)]
    for r, d in zip(sft, dpo):
        assert [x["role"] for x in r["prompt"]] == ["system", "user"] and r["completion"][0]["role"] == "assistant"
        call = json.loads(r["completion"][0]["content"])
        rej = json.loads(d["rejected"][0]["content"])
        assert set(call) == {"tool_name", "parameters"} and "\n" not in r["completion"][0]["content"]
        assert d["chosen"] == r["completion"] and d["prompt"] == r["prompt"]
        assert rej["tool_name"] != call["tool_name"] and provider_of(rej["tool_name"]) != provider_of(call["tool_name"])
        parsed = parse_prompt(r["prompt"][0]["content"])
        assert parsed.setting == r["setting"]
        # the decision case (harness.cases) each row carries, checked against what its history shows
        shown = {provider_of(h.tool_name) for h in parsed.history}
        assert d["case"] == r["case"] in ("absent", "visible", "switch", "avoid")
        assert (provider_of(call["tool_name"]) in shown) == (r["case"] in ("visible", "switch"))
        assert r["setting"] != "preferred" or r["case"] in ("absent", "visible")
    lf = json.loads((out / "llamafactory/dataset_sft/dataset_info.json").read_text())
    assert sorted(lf) == ["user_entries_sft_c", "user_entries_sft_p", "user_entries_sft_r"]
    rows = json.loads((out / "llamafactory/dataset_sft/user_entries_sft_p.json").read_text())
    assert set(rows[0]) == {"system", "instruction", "output"} and len(rows) == 12  # system prompt, query, call
    lfd = json.loads((out / "llamafactory/dataset_dpo/dataset_info.json").read_text())
    assert all(v["ranking"] for v in lfd.values())
    from datasets import load_from_disk

    dd = load_from_disk(str(out / "hf"))
    assert dd["sft"].num_rows == 36 and dd["dpo"].num_rows == 36 and dd["test"].num_rows == 6
    assert dd["sft"]["case"] == [r["case"] for r in sft]
    assert m["files"] == file_hashes(out)  # the manifest hashes every file it ships
    assert m["counts"]["rejected_equals_chosen"] == 0
    users = [json.loads(x) for x in (out / "users.jsonl").read_text().splitlines()]
    assert len(users) == 18 and all(u["preferred_provider"] in u["tool_comb"] for u in users)


def test_no_temporary_files_are_left_behind(sample_run: tuple[Path, dict]) -> None:
    out, _ = sample_run
    assert not [p for p in out.rglob("*.tmp")]
