"""Profiles read from the ``training:`` section of configs/*.yaml, and their translation to TRL / PEFT / Unsloth."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from petool_lib.training import (
    LLAMA_PROJECTIONS,
    LoraSpec,
    PROFILE_NAMES,
    Profile,
    ProfileError,
    dpo_config,
    dpo_kwargs,
    load_training_profile,
    lora_kwargs,
    precision,
    profile_path,
    sft_config,
    sft_kwargs,
    stage_config,
    to_dict,
    unsloth_load_kwargs,
    unsloth_peft_kwargs,
)

REPO = Path(__file__).resolve().parents[2]


def test_paper_profile_is_the_reference_config() -> None:
    paper = load_training_profile("paper")
    sft, dpo = paper.sft, paper.dpo
    assert (sft.lora.r, sft.learning_rate, sft.epochs, sft.batch_size, sft.grad_accum, sft.warmup_ratio,
            sft.token_budget, sft.scheduler) == (8, 1e-4, 1, 2, 8, 0.1, 4096, "cosine")
    assert (dpo.lora.r, dpo.beta, dpo.learning_rate, dpo.epochs, dpo.batch_size, dpo.grad_accum, dpo.loss_type) == (
        8, 0.1, 5e-6, 1, 1, 32, "sigmoid")
    assert sft.lora.target_modules == dpo.lora.target_modules == "all-linear"


ANSWER_SHOWN = dict(token_budget=2048, context="compact", cases=("visible", "switch"), rename_providers=1.0,
                    rename_style="name", target="name", logging_steps=1, bf16=True, epochs=1, batch_size=1,
                    warmup_ratio=0.0)
ANSWER_SHOWN_SFT = dict(ANSWER_SHOWN, learning_rate=6e-4, grad_accum=4, max_examples=256, save_steps=16,
                        lora=LoraSpec(top_layers=10))


def answer_shown_dpo(**kw: object) -> dict[str, object]:
    return dict(ANSWER_SHOWN, learning_rate=1e-4, grad_accum=2, beta=0.1, sft_weight=1.0, **kw)


# the values of the former Python PROFILES dict: the recorded results (README, outputs/) were trained with them
RECORDED = {
    "paper": (True, "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
              dict(learning_rate=1e-4, epochs=1, batch_size=2, grad_accum=8, warmup_ratio=0.1, token_budget=4096,
                   logging_steps=10, save_steps=100, gradient_checkpointing=True),
              dict(learning_rate=5e-6, epochs=1, batch_size=1, grad_accum=32, warmup_ratio=0.1, beta=0.1,
                   token_budget=4096, logging_steps=5, save_steps=50, gradient_checkpointing=True)),
    # cpu and cpu-long share the answer-shown SFT recipe; cpu trains on 128 SFT rows instead of 256 (2026-12-06,
    # fourteenth session) and DPO on 16 pairs instead of 48
    "cpu": (False, "smollm2", dict(ANSWER_SHOWN_SFT, max_examples=128), answer_shown_dpo(max_examples=16, save_steps=4)),
    "cpu-long": (False, "smollm2", ANSWER_SHOWN_SFT, answer_shown_dpo(max_examples=48, save_steps=8)),
    "tiny": (False, "tiny",
             dict(learning_rate=5e-3, epochs=1, batch_size=2, grad_accum=1, warmup_ratio=0.0, token_budget=1536,
                  max_examples=8, logging_steps=1, save_steps=2),
             dict(learning_rate=5e-3, epochs=1, batch_size=2, grad_accum=1, warmup_ratio=0.0, beta=0.1,
                  token_budget=1536, max_examples=8, logging_steps=1, save_steps=2)),
}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_yaml_profiles_hold_the_recorded_values(name: str) -> None:
    from petool_lib.training import StageConfig

    prof = load_training_profile(name)
    four_bit, model, sft, dpo = RECORDED[name]
    assert isinstance(prof, Profile) and prof.name == name and prof.description
    assert (prof.load_in_4bit, prof.default_model) == (four_bit, model)
    assert Path(prof.source) == profile_path(name) == REPO / "configs" / f"{name}.yaml"
    for got, want in ((prof.sft, sft), (prof.dpo, dpo)):
        expected = to_dict(StageConfig(**want))
        assert to_dict(got) == expected
        assert {k: type(v) for k, v in to_dict(got).items()} == {k: type(v) for k, v in expected.items()}


def _write(tmp_path: Path, training: object, name: str = "mine.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump({"seed": 0, "training": training}))
    return p


def test_any_yaml_path_loads_and_unset_keys_take_the_defaults(tmp_path: Path) -> None:
    p = _write(tmp_path, {"sft": {"learning_rate": 0.001, "lora": {"r": 16, "target_modules": ["q_proj", "v_proj"]}},
                          "dpo": {"learning_rate": 1e-5, "too_long": "keep"}})
    prof = load_training_profile(p)
    assert prof.name == "mine" and prof.default_model == "smollm2" and prof.load_in_4bit is False
    assert prof.sft.lora.r == 16 and prof.sft.lora.target_modules == ("q_proj", "v_proj") and prof.sft.epochs == 1.0
    assert prof.dpo.too_long == "keep" and prof.dpo.beta == 0.1
    assert load_training_profile(str(p)) == prof
    assert stage_config(p, "sft", max_steps=3) == stage_config(prof, "sft", max_steps=3)


@pytest.mark.parametrize("training,match", [
    (None, r"mine\.yaml: no 'training:' mapping"),
    ({"sft": {"learning_rate": 1e-4}}, r"mine\.yaml: training: missing key\(s\) \['dpo'\]"),
    ({"sft": {"learning_rate": 1e-4}, "dpo": {"learning_rate": 1e-4}, "epochs": 2},
     r"mine\.yaml: training: unknown key\(s\) \['epochs'\]"),
    ({"sft": {"learning_rat": 1e-4}, "dpo": {"learning_rate": 1e-4}},
     r"mine\.yaml: training\.sft: unknown key\(s\) \['learning_rat'\]"),
    ({"sft": {"epochs": 1}, "dpo": {"learning_rate": 1e-4}},
     r"mine\.yaml: training\.sft: missing key\(s\) \['learning_rate'\]"),
    ({"sft": {"learning_rate": "1e-4"}, "dpo": {"learning_rate": 1e-4}},
     r"training\.sft\.learning_rate: expected float, got '1e-4' \(YAML reads 1e-4 as a string: write 1\.0e-4\)"),
    ({"sft": {"learning_rate": 1e-4, "batch_size": 1.5}, "dpo": {"learning_rate": 1e-4}},
     r"training\.sft\.batch_size: expected int, got 1\.5"),
    ({"sft": {"learning_rate": 1e-4, "token_budget": "big"}, "dpo": {"learning_rate": 1e-4}},
     r"training\.sft\.token_budget: expected int \| None, got 'big'"),
    ({"sft": {"learning_rate": 1e-4}, "dpo": {"learning_rate": 1e-4, "lora": {"rank": 8}}},
     r"training\.dpo\.lora: unknown key\(s\) \['rank'\]"),
    ({"sft": {"learning_rate": 1e-4}, "dpo": {"learning_rate": 1e-4, "too_long": "truncate"}},
     r"training\.dpo: too_long must be one of"),
    ({"sft": {"learning_rate": 1e-4}, "dpo": [1, 2]}, r"training\.dpo: expected a mapping"),
    ({"sft": {"learning_rate": 1e-4}, "dpo": {"learning_rate": 1e-4}, "load_in_4bit": "yes please"},
     r"training\.load_in_4bit: expected bool"),
])
def test_profile_errors_name_the_file_and_the_key(tmp_path: Path, training: object, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        load_training_profile(_write(tmp_path, training))


def test_unknown_profile_names_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"'gpu'.*configs/gpu\.yaml not found.*tiny, cpu, cpu-long, paper"):
        load_training_profile("gpu")
    with pytest.raises(ProfileError, match="not found"):
        load_training_profile(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: [unclosed\n")
    with pytest.raises(ProfileError, match=r"bad\.yaml: not valid YAML"):
        load_training_profile(bad)


def test_translation_to_trl_configs(tmp_path: Path) -> None:
    cfg = stage_config("paper", "sft")
    kw = sft_kwargs(cfg, str(tmp_path), seed=3, device="cuda", bf16_supported=True)
    assert kw["completion_only_loss"] is True and kw["max_length"] is None and kw["packing"] is False
    assert (kw["learning_rate"], kw["per_device_train_batch_size"], kw["gradient_accumulation_steps"],
            kw["num_train_epochs"], kw["warmup_steps"], kw["lr_scheduler_type"], kw["max_steps"]) == (
        1e-4, 2, 8, 1, 0.1, "cosine", -1)
    assert kw["bf16"] is True and kw["fp16"] is False and kw["use_cpu"] is False and kw["seed"] == 3
    dkw = dpo_kwargs(stage_config("paper", "dpo", max_steps=7), str(tmp_path), device="cpu")
    assert dkw["beta"] == 0.1 and dkw["loss_type"] == ["sigmoid"] and dkw["max_steps"] == 7
    assert dkw["use_cpu"] is True and dkw["bf16"] is False and dkw["precompute_ref_log_probs"] is False
    assert "loss_weights" not in dkw  # the paper's pure preference loss by default
    rkw = dpo_kwargs(stage_config("paper", "dpo", sft_weight=0.5), str(tmp_path), device="cpu")
    assert rkw["loss_type"] == ["sigmoid", "sft"] and rkw["loss_weights"] == [1.0, 0.5]
    with pytest.raises(ValueError, match="sft_weight"):
        stage_config("paper", "dpo", sft_weight=-1.0)
    # the objects really construct with the installed TRL (on CPU)
    sc = sft_config(stage_config("tiny", "sft"), str(tmp_path / "s"))
    dc = dpo_config(stage_config("cpu", "dpo"), str(tmp_path / "d"))
    assert sc.completion_only_loss and sc.lr_scheduler_type.value == "cosine" and not sc.gradient_checkpointing
    assert dc.beta == 0.1 and dc.loss_type == ["sigmoid", "sft"] and dc.bf16 is True  # cpu: bf16 autocast, RPO


def test_stage_config_overrides() -> None:
    base = stage_config("tiny", "sft")
    cfg = stage_config("tiny", "sft", max_steps=3, token_budget=None, lora={"r": 4})
    assert cfg.max_steps == 3 and cfg.token_budget == base.token_budget and cfg.lora.r == 4  # None = not overridden
    with pytest.raises(ValueError, match="unknown stage config keys"):
        stage_config("tiny", "sft", learning_rat=1.0)
    with pytest.raises(ValueError, match="unknown stage"):
        stage_config("tiny", "ppo")


def test_precision_flags() -> None:
    gpu = stage_config("paper", "sft")
    assert precision(gpu, "cuda", bf16_supported=True) == (True, False)
    assert precision(gpu, "cuda", bf16_supported=False) == (False, True)  # e.g. T4: fp16
    assert precision(gpu, "cpu") == (False, False)
    assert precision(stage_config("cpu", "sft"), "cpu") == (True, False)


def test_unsloth_kwargs_match_the_hf_lora() -> None:
    cfg = stage_config("paper", "sft")
    hf = lora_kwargs(cfg.lora)
    assert hf == {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear", "bias": "none",
                  "task_type": "CAUSAL_LM"}
    us = unsloth_peft_kwargs(cfg, seed=5)
    assert (us["r"], us["lora_alpha"], us["lora_dropout"], us["bias"]) == (8, 16, 0.0, "none")
    assert us["target_modules"] == list(LLAMA_PROJECTIONS)
    assert us["use_gradient_checkpointing"] == "unsloth" and us["random_state"] == 5 and us["max_seq_length"] == 4096
    load = unsloth_load_kwargs("unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit", cfg,
                               load_training_profile("paper").load_in_4bit)
    assert load == {"model_name": "unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit", "max_seq_length": 4096,
                    "dtype": None, "load_in_4bit": True}
    custom = stage_config("paper", "sft", lora={"target_modules": ("q_proj", "v_proj")})
    assert unsloth_peft_kwargs(custom)["target_modules"] == ["q_proj", "v_proj"]
    assert unsloth_peft_kwargs(stage_config("cpu", "sft"), num_layers=30)["use_gradient_checkpointing"] is False


def test_lora_top_layers_adapt_only_the_last_layers() -> None:
    cfg = stage_config("paper", "sft", lora={"top_layers": 2})
    kw = lora_kwargs(cfg.lora, num_layers=30)
    assert kw["layers_to_transform"] == [28, 29] and kw["layers_pattern"] == "layers"
    assert kw["target_modules"] == list(LLAMA_PROJECTIONS)  # PEFT needs a list with layers_to_transform
    assert unsloth_peft_kwargs(cfg, num_layers=30)["layers_to_transform"] == [28, 29]
    assert "layers_to_transform" not in lora_kwargs(stage_config("paper", "sft").lora, num_layers=30)
    assert lora_kwargs(stage_config("paper", "sft", lora={"top_layers": 99}).lora, 4)["layers_to_transform"] == \
        [0, 1, 2, 3]
    with pytest.raises(ValueError, match="number of decoder layers"):
        lora_kwargs(cfg.lora)
    with pytest.raises(ValueError, match="top_layers must be >= 1"):
        stage_config("paper", "sft", lora={"top_layers": 0})


def test_lora_top_layers_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("training:\n  description: x\n  sft: {learning_rate: 1.0e-3, lora: {top_layers: 12}}\n"
                    "  dpo: {learning_rate: 1.0e-5}\n")
    assert load_training_profile(path).sft.lora.top_layers == 12
    path.write_text("training:\n  description: x\n  sft: {learning_rate: 1.0e-3, lora: {top_layers: twelve}}\n"
                    "  dpo: {learning_rate: 1.0e-5}\n")
    with pytest.raises(ProfileError, match="top_layers"):
        load_training_profile(path)


def test_report_to_is_parsed_checked_and_reaches_the_trl_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from petool_lib.training.cli import main
    from petool_lib.training.config import check_report_to, parse_report_to

    assert parse_report_to(None) == () and parse_report_to("none") == ()
    assert parse_report_to("tensorboard, trackio,tensorboard") == ("tensorboard", "trackio")
    assert parse_report_to(["wandb"]) == ("wandb",)
    for bad, match in (("mlflow", "unknown tracker"), ("none,tensorboard", "cannot be combined"), (3, "name or a list")):
        with pytest.raises(ValueError, match=match):
            parse_report_to(bad)
    base = load_training_profile("tiny")
    assert base.report_to == ()  # the shipped profiles log nowhere
    cfg = stage_config(base, "sft")
    assert sft_kwargs(cfg, str(tmp_path))["report_to"] == "none"
    assert sft_kwargs(cfg, str(tmp_path), report_to=("tensorboard",))["report_to"] == ["tensorboard"]
    assert dpo_kwargs(stage_config(base, "dpo"), str(tmp_path), report_to=("trackio",))["report_to"] == ["trackio"]
    raw = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())["training"]
    for value, expect in (("tensorboard", ("tensorboard",)), (["tensorboard", "wandb"], ("tensorboard", "wandb"))):
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump({"training": dict(raw, report_to=value)}))
        assert load_training_profile(p).report_to == expect
    p.write_text(yaml.safe_dump({"training": dict(raw, report_to="mlflow")}))
    with pytest.raises(ProfileError, match=r"r\.yaml: training\.report_to: .*unknown tracker"):
        load_training_profile(p)
    # a tracker whose package is missing: a clear error before anything loads (here: none of them installed)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(ProfileError, match="report_to trackio: the trackio package is not installed"):
        check_report_to(("trackio",))
    check_report_to(())  # none: nothing to check
    rc = main(["sft", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--profile", "tiny", "--report-to", "x"])
    assert rc == 2 and "--report-to: " in capsys.readouterr().err
