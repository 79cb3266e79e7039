"""The whole pipeline: complete outputs in the official format, determinism, and notebook 01's views."""

from __future__ import annotations

from pathlib import Path


from petool_lib.core.data import SETTINGS, load_test_set, provider_of
from petool_lib.core.prompts import parse_prompt, render_prompt
from petool_lib.synthesis.pipeline import (Preparation, holdout_split, preparation_metrics, preparation_summary,
                                           synthesize, understanding_sample, write_tool_files)
from petool_lib.synthesis.understanding import ATTRIBUTES

from .helpers import synth_cfg


def test_outputs_are_complete_and_in_the_official_format(sample_run: tuple[Path, dict]) -> None:
    out, m = sample_run
    for name in ("tools.jsonl", "groups.json", "users.jsonl", "test.json", "sft.jsonl", "dpo.jsonl", "manifest.json",
                 "hf/dataset_dict.json", "llamafactory/dataset_sft/dataset_info.json",
                 "llamafactory/dataset_dpo/dataset_info.json"):
        assert (out / name).is_file(), name
    entries = load_test_set(out / "test.json")
    assert len(entries) == 6 and m["counts"]["train_entries"] == 12
    for e in entries:
        assert len(e.candidates) == 10 and set(e.group_names) <= set(e.candidate_names)
        assert e.ground_truth["tool_name"] in e.group_names
        for s in SETTINGS:
            p = parse_prompt(e.prompts[s], s)
            assert render_prompt(s, p.history, p.candidates) == e.prompts[s]  # byte-compatible with the harness
            assert len(p.history) <= 20 and e.history_length >= len(parse_prompt(e.prompts["preferred"]).history)
            names = [h.tool_name for h in p.history]
            assert e.ground_truth["tool_name"] not in names
        pref = parse_prompt(e.prompts["preferred"]).history
        assert not set(h.tool_name for h in pref) & set(e.group_names)
        comb = set(e.tool_comb)
        assert all(h.tool_name[1:].split(">.<")[1] in comb for h in pref)
        zeros = [h for h in parse_prompt(e.prompts["ratings"]).history if h.rating == 0]
        assert 1 <= len(zeros) <= 5 and len({provider_of(h.tool_name) for h in zeros}) == 1
        assert provider_of(zeros[0].tool_name) in {provider_of(n) for n in e.group_names}
        assert provider_of(zeros[0].tool_name) != provider_of(e.ground_truth["tool_name"])
        chrono = parse_prompt(e.prompts["chronological"]).history
        assert {h.tool_name for h in chrono[:len(zeros)]} == {h.tool_name for h in zeros}


def test_same_seed_gives_byte_identical_files(sample_run: tuple[Path, dict], tmp_path: Path, synth_cache: Path) -> None:
    out, m = sample_run
    again = synthesize(synth_cfg(tmp_path / "again", synth_cache))
    assert again["files"] == m["files"]
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (out / "manifest.json").read_bytes()
    other = synthesize(synth_cfg(tmp_path / "other", synth_cache, seed=1))
    assert other["files"]["sft.jsonl"] != m["files"]["sft.jsonl"]


def test_manifest_records_the_llm(sample_run: tuple[Path, dict]) -> None:
    _, m = sample_run
    assert m["parameters"]["llm"] == "offline" and "backend" not in m["parameters"]
    assert m["llm"]["name"] == "offline" and m["llm"]["plan"]["llm"]["name"] == "offline"
    assert not {"out", "cache_dir", "progress", "dry_run", "test_set"} & set(m["parameters"])


def test_preparation_views(prep: Preparation, sample_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, m = sample_run
    written = write_tool_files(prep, tmp_path)
    assert [p.name for p in written] == ["tools.jsonl", "groups.json"]
    for p in written:  # notebook 01's tool files are the ones notebook 02 ships
        assert p.read_bytes() == (out / p.name).read_bytes()
    summary = preparation_summary(prep)
    assert summary["grouping"] == m["grouping"] and summary["inputs"] == m["inputs"]
    rows = understanding_sample(prep, n=5)
    docs = prep.catalog.documented
    assert [r["api"] for r in rows] == [a.full_name for a in docs[:: len(docs) // 5][:5]]
    assert all(list(r) == ["api", "functionality", *ATTRIBUTES] for r in rows)
    split = holdout_split(prep)
    assert split["train target groups"] == len(prep.train_groups) and split["holdout"] == "strict"
    metrics = preparation_metrics(prep)
    assert list(metrics) == [*split, "groups", "size_distribution", "agreement_with_official_groups", "apis",
                             "skipped_inputs"]
    assert metrics["groups"] == m["grouping"]["groups"] and metrics["apis"] == m["inputs"]["catalog"]["apis"]
