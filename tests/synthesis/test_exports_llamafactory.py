"""The LLaMA-Factory export and recipes (configs/llamafactory/): LLaMA-Factory 0.9.5's documented dataset schema, our
trainer's two messages (system = setting prompt, user = query), prompts fitted to the budget by our context builder
(never cut at the end), and recipes that use only LLaMA-Factory's keys and name the exported datasets.

LLaMA-Factory is not installed here (it pins transformers <= 5.6): the schema and the allow-list below are copied
from its 0.9.5 sdist (``pip download llamafactory==0.9.5 --no-deps``), each with the file it comes from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from petool_lib.core.context import make_messages, template_ids
from petool_lib.core.data import SETTINGS
from petool_lib.core.prompts import parse_prompt
from petool_lib.synthesis.cli import build_parser, config_from_args
from petool_lib.synthesis.exports import (LF_CUTOFF_LEN, SETTING_LETTER, fit_export_prompts, load_tokenizer)
from petool_lib.synthesis.pipeline import synthesize

from .helpers import synth_cfg

REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "configs" / "llamafactory"

# data/README.md (the dataset_info.json description) and src/llamafactory/data/parser.py (DatasetAttr.join)
DATASET_INFO_KEYS = {"hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name", "file_name",
                     "formatting", "ranking", "subset", "split", "folder", "num_samples", "columns", "tags"}
FORMATTINGS = {"alpaca", "sharegpt", "openai"}  # parser.py: DatasetAttr.formatting Literal
COLUMN_NAMES = {"prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
                "audios", "chosen", "rejected", "kto_tag"}  # parser.py: DatasetAttr.join column_names
ALPACA_DEFAULTS = {"prompt": "instruction", "query": "input", "response": "output"}  # parser.py: DatasetAttr

# Recipe keys, each checked present in LLaMA-Factory 0.9.5: src/llamafactory/hparams/model_args.py (model_*,
# adapter_name_or_path, trust_remote_code), hparams/data_args.py (dataset*, template, cutoff_len, overwrite_cache,
# *_num_workers of preprocessing), hparams/finetuning_args.py (stage, finetuning_type, lora_*, pref_*, ref_model*,
# plot_loss), hparams/training_args.py (overwrite_output_dir) and the transformers Seq2SeqTrainingArguments it
# extends (the rest; as used in examples/train_lora/qwen3_lora_sft.yaml and qwen3_lora_dpo.yaml).
ALLOWED_RECIPE_KEYS = {
    # model_args.py
    "model_name_or_path", "adapter_name_or_path", "trust_remote_code",
    # data_args.py
    "dataset", "dataset_dir", "template", "cutoff_len", "overwrite_cache", "preprocessing_num_workers",
    "max_samples", "val_size",
    # finetuning_args.py
    "stage", "finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "create_new_adapter",
    "pref_beta", "pref_loss", "pref_ftx", "ref_model", "ref_model_adapters", "plot_loss",
    # training_args.py + transformers TrainingArguments
    "do_train", "output_dir", "overwrite_output_dir", "logging_steps", "save_steps", "save_only_model", "report_to",
    "per_device_train_batch_size", "gradient_accumulation_steps", "learning_rate", "num_train_epochs",
    "lr_scheduler_type", "warmup_ratio", "bf16", "seed", "ddp_timeout", "resume_from_checkpoint",
    "dataloader_num_workers", "gradient_checkpointing",
}


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def lf_messages(row: dict[str, Any], attr: dict[str, Any]) -> list[dict[str, str]]:
    """The messages LLaMA-Factory builds from an alpaca row (src/llamafactory/data/converter.py,
    AlpacaDatasetConverter: user = prompt column, then "\\n" + query column when that column is mapped and set;
    system = the system column). Columns come from DatasetAttr.join: once ``columns`` is given, an unmapped one is
    None."""
    cols = attr["columns"]
    user = [row[cols[k]] for k in ("prompt", "query") if cols.get(k) and row.get(cols[k])]
    system = row[cols["system"]] if cols.get("system") else ""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "\n".join(user)}]


def _rows(out: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / name).read_text().splitlines()]


# --- the export's schema -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_dataset_info_follows_llamafactory_schema(sample_run: tuple[Path, dict], stage: str) -> None:
    out, _ = sample_run
    folder = out / "llamafactory" / f"dataset_{stage}"
    info = _json(folder / "dataset_info.json")
    assert sorted(info) == sorted(f"user_entries_{stage}_{x}" for x in SETTING_LETTER.values())
    for name, attr in info.items():
        assert set(attr) <= DATASET_INFO_KEYS, name
        assert attr.get("formatting", "alpaca") in FORMATTINGS and attr.get("formatting", "alpaca") == "alpaca"
        assert (folder / attr["file_name"]).is_file(), attr["file_name"]
        cols = attr["columns"]
        assert set(cols) <= COLUMN_NAMES
        if stage == "dpo":
            assert attr["ranking"] is True and {"chosen", "rejected"} <= set(cols) and "response" not in cols
        else:
            assert not attr.get("ranking", False) and "response" in cols and "chosen" not in cols
        assert "query" not in cols  # nothing joined onto the query
        rows = _json(folder / attr["file_name"])
        assert isinstance(rows, list) and rows
        for row in rows:
            assert set(row) == set(cols.values())  # every mapped column in every row, nothing else
            assert all(isinstance(row[c], str) and row[c] for c in cols.values())


def test_rows_keep_system_and_query_apart(sample_run: tuple[Path, dict]) -> None:
    """LLaMA-Factory builds the same two messages our trainer uses: system = setting prompt, user = query."""
    out, m = sample_run
    assert m["llamafactory"]["too_long"] == 0 and m["llamafactory"]["fitted"] == 0  # the sample fits 4,096
    sft, dpo = _rows(out, "sft.jsonl"), _rows(out, "dpo.jsonl")
    for stage, source in (("sft", sft), ("dpo", dpo)):
        folder = out / "llamafactory" / f"dataset_{stage}"
        info = _json(folder / "dataset_info.json")
        for s, letter in SETTING_LETTER.items():
            attr = info[f"user_entries_{stage}_{letter}"]
            rows = _json(folder / attr["file_name"])
            ours = [r for r in source if r["setting"] == s]
            assert len(rows) == len(ours)
            for row, r in zip(rows, ours):
                assert row["system"] == r["prompt"][0]["content"] and parse_prompt(row["system"]).setting == s
                assert row["instruction"] == r["prompt"][1]["content"]
                assert lf_messages(row, attr) == r["prompt"] == make_messages(row["system"], row["instruction"])
                if stage == "sft":
                    assert row["output"] == r["completion"][0]["content"]
                else:
                    assert (row["chosen"], row["rejected"]) == (r["chosen"][0]["content"], r["rejected"][0]["content"])


# --- fitting to the token budget (the tiny model's tokenizer: SmolLM2's, built locally) ----------------------------


@pytest.fixture(scope="module")
def tiny_tok() -> Any:
    return load_tokenizer("tiny")


def _tokens(tok: Any, prompt: list[dict[str, str]], answers: list[str]) -> int:
    reserve = max(len(tok(a, add_special_tokens=False)["input_ids"]) for a in answers) + 1
    return len(template_ids(tok, prompt)) + reserve


def test_prompts_are_fitted_by_the_context_builder(sample_run: tuple[Path, dict], tiny_tok: Any) -> None:
    out, _ = sample_run
    sft, dpo = _rows(out, "sft.jsonl"), _rows(out, "dpo.jsonl")
    answers = {(r["entry_id"], r["setting"]): [r["chosen"][0]["content"], r["rejected"][0]["content"]] for r in dpo}
    sizes = sorted(_tokens(tiny_tok, r["prompt"], answers[(r["entry_id"], r["setting"])]) for r in sft)
    budget = sizes[len(sizes) // 2]  # about half the prompts are over it
    f_sft, f_dpo, st = fit_export_prompts(sft, dpo, tiny_tok, budget, "tiny")
    assert st.to_dict()["checked"]
    over = sum(n > budget for n in sizes)
    assert over > 0 and st.fitted + st.too_long == over and st.prompts == len(sft)
    assert st.fitted > 0 and st.history_items_dropped > 0
    assert len(f_sft) == len(f_dpo) == len(sft) - st.too_long and st.too_long == len(st.too_long_ids)
    by_key = {(r["entry_id"], r["setting"]): r for r in sft}
    for a, b in zip(f_sft, f_dpo):
        key = (a["entry_id"], a["setting"])
        assert a["prompt"] == b["prompt"]  # SFT and DPO see the same fitted prompt
        assert _tokens(tiny_tok, a["prompt"], answers[key]) <= budget
        orig, new = by_key[key]["prompt"], a["prompt"]
        assert new[1] == orig[1]  # the query is never cut
        p0, p1 = parse_prompt(orig[0]["content"]), parse_prompt(new[0]["content"])
        assert p1.candidate_names == p0.candidate_names and p1.setting == p0.setting
        assert len(p1.history) <= len(p0.history)
    assert st.tokens_max <= budget


def test_rows_that_cannot_fit_are_left_out_and_counted(sample_run: tuple[Path, dict], tiny_tok: Any) -> None:
    out, _ = sample_run
    sft, dpo = _rows(out, "sft.jsonl"), _rows(out, "dpo.jsonl")
    f_sft, f_dpo, st = fit_export_prompts(sft, dpo, tiny_tok, 200, "tiny")  # below the task text alone
    assert f_sft == f_dpo == [] and st.too_long == st.prompts == len(sft)
    assert sorted(map(tuple, st.too_long_ids)) == sorted((r["entry_id"], r["setting"]) for r in sft)
    same_sft, same_dpo, none = fit_export_prompts(sft, dpo, None)  # no tokenizer: unchanged, stated
    assert same_sft == sft and same_dpo == dpo and none.to_dict()["checked"] is False


def test_synthesize_fits_the_export_and_records_it(tmp_path: Path, synth_cache: Path, tiny_tok: Any) -> None:
    m = synthesize(synth_cfg(tmp_path / "run", synth_cache, train=4, test=2, lf_tokenizer="tiny",
                             lf_cutoff_len=2000))
    lf = m["llamafactory"]
    assert lf["checked"] and lf["cutoff_len"] == 2000 and lf["tokenizer"] == "tiny" and lf["prompts"] == 12
    assert lf["fitted"] > 0 and lf["sft_rows"] == lf["dpo_rows"] == 12 - lf["too_long"]
    assert m["counts"]["sft_rows"] == 12  # sft.jsonl / dpo.jsonl keep the original prompts
    root = tmp_path / "run" / "llamafactory"
    for letter in SETTING_LETTER.values():
        for row in _json(root / "dataset_dpo" / f"user_entries_dpo_{letter}.json"):
            prompt = make_messages(row["system"], row["instruction"])
            assert _tokens(tiny_tok, prompt, [row["chosen"], row["rejected"]]) <= 2000


def test_a_tokenizer_that_cannot_load_fails_before_any_work(tmp_path: Path, synth_cache: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="--lf-tokenizer none"):
        synthesize(synth_cfg(out, synth_cache, train=2, test=1, lf_tokenizer=str(tmp_path / "no-such-tokenizer")))
    assert not out.exists() or not any(out.iterdir())


def test_cli_sets_the_budget_and_tokenizer() -> None:
    cfg = config_from_args(build_parser().parse_args(["--out", "x"]))
    assert (cfg.lf_cutoff_len, cfg.lf_tokenizer) == (LF_CUTOFF_LEN, "smollm2")
    cfg = config_from_args(build_parser().parse_args(["--out", "x", "--lf-cutoff-len", "2048", "--lf-tokenizer",
                                                      "none"]))
    assert (cfg.lf_cutoff_len, cfg.lf_tokenizer) == (2048, None)


# --- the recipes ---------------------------------------------------------------------------------------------------


def _recipe(stage: str) -> dict[str, Any]:
    return yaml.safe_load((RECIPES / f"{stage}.yaml").read_text())


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_recipes_use_llamafactory_keys_and_exported_datasets(sample_run: tuple[Path, dict], stage: str) -> None:
    out, _ = sample_run
    r = _recipe(stage)
    assert set(r) <= ALLOWED_RECIPE_KEYS, sorted(set(r) - ALLOWED_RECIPE_KEYS)
    assert r["stage"] == stage and r["do_train"] is True and r["finetuning_type"] == "lora"
    assert r["lora_target"] == "all" and r["lora_rank"] == 8 and r["template"] == "llama3"
    assert r["model_name_or_path"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert r["dataset_dir"].endswith(f"llamafactory/dataset_{stage}")
    info = _json(out / "llamafactory" / f"dataset_{stage}" / "dataset_info.json")
    names = r["dataset"].split(",")
    assert sorted(names) == sorted(info) and len(names) == len(SETTINGS)


def test_recipes_match_the_paper_profile() -> None:
    paper = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())["training"]
    sft, dpo = _recipe("sft"), _recipe("dpo")
    for r, p in ((sft, paper["sft"]), (dpo, paper["dpo"])):
        assert r["learning_rate"] == p["learning_rate"] and r["num_train_epochs"] == p["epochs"]
        assert r["per_device_train_batch_size"] == p["batch_size"]
        assert r["gradient_accumulation_steps"] == p["grad_accum"] and r["warmup_ratio"] == p["warmup_ratio"]
        assert r["cutoff_len"] == p["token_budget"] == LF_CUTOFF_LEN and r["lr_scheduler_type"] == "cosine"
    assert (sft["learning_rate"], sft["per_device_train_batch_size"], sft["gradient_accumulation_steps"]) == (1e-4, 2, 8)
    assert (dpo["learning_rate"], dpo["per_device_train_batch_size"], dpo["gradient_accumulation_steps"]) == (5e-6, 1, 32)
    assert dpo["pref_beta"] == paper["dpo"]["beta"] == 0.1 and dpo["pref_loss"] == "sigmoid"
    # DPO continues the SFT adapter, and its reference is the SFT model (as in our trainer)
    assert dpo["adapter_name_or_path"] == dpo["ref_model_adapters"] == sft["output_dir"]
    assert dpo["ref_model"] == dpo["model_name_or_path"] == sft["model_name_or_path"]
    assert dpo["output_dir"] != sft["output_dir"]
