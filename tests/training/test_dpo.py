"""The DPO stage: the reference is the SFT policy at step 0 and stays frozen, and DPO raises the chosen-minus-rejected
margin."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from petool_lib.training import adapter_state, load_rows, preference_margins, prepare_rows, train_dpo  # noqa: E402

from .helpers import BUDGET, tiny, tiny_stage  # noqa: E402


def test_dpo_reference_is_the_sft_policy_at_step0(pipeline: dict[str, Any]) -> None:
    m = pipeline["dpo"].metrics
    check = m["step0_reference_check"]
    assert check["equal"] and check["max_abs_logp_diff"] == 0.0 and check["reward_margin_mean"] == 0.0
    assert m["reference_unchanged"] and m["loss_type"] == "sigmoid" and m["beta"] == 0.1
    first = next(h for h in pipeline["dpo"].log_history if "loss" in h)
    assert first["step"] == 1 and first["rewards/margins"] == 0.0
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)  # sigmoid loss at margin 0
    # the frozen "ref" adapter still holds the SFT weights after training
    from safetensors.torch import load_file

    sft_w = load_file(str(pipeline["out"] / "sft" / "adapter_model.safetensors"))
    ref = adapter_state(pipeline["dpo"].model, "ref")
    assert ref.keys() == sft_w.keys()
    assert all(torch.equal(ref[k].cpu(), v) for k, v in sft_w.items())


def test_dpo_raises_chosen_minus_rejected_margin(pipeline: dict[str, Any], data_dir: Path, tokenizer: Any) -> None:
    from petool_lib.core import load_model

    cfg = tiny_stage("dpo", token_budget=BUDGET, max_examples=6)
    pairs, _ = prepare_rows(load_rows(data_dir, "dpo"), "dpo", tokenizer, cfg)
    sft_model, tok = load_model("tiny", adapter=str(pipeline["sft"].out_dir))
    dpo_model, _ = load_model("tiny", adapter=str(pipeline["dpo"].out_dir))
    before = preference_margins(sft_model, tok, pairs)
    after = preference_margins(dpo_model, tok, pairs)
    gain = sum(after) / len(after) - sum(before) / len(before)
    print(f"mean log p(chosen) - log p(rejected): SFT {sum(before)/len(before):.4f} -> DPO {sum(after)/len(after):.4f}")
    assert gain > 0.05, f"mean margin {sum(before)/len(before):.3f} -> {sum(after)/len(after):.3f}"
    hist = [h for h in pipeline["dpo"].log_history if "rewards/margins" in h]
    assert hist[-1]["rewards/margins"] > 0


def test_dpo_needs_the_sft_adapter(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a PEFT adapter directory"):
        train_dpo(data_dir, tiny_stage("dpo"), adapter=tmp_path / "nope", profile=tiny(), model="tiny",
                  out=tmp_path / "dpo", backend="hf")


def test_dpo_sft_weight_adds_the_chosen_nll(pipeline: dict[str, Any], data_dir: Path, tmp_path: Path) -> None:
    """``sft_weight`` > 0 adds TRL's ``sft`` term (mean NLL of the chosen completion) to the sigmoid loss: at step 0
    the margin is 0, so the logged loss is log 2 + weight x NLL, well above the pure loss's log 2."""
    res = train_dpo(data_dir, tiny_stage("dpo", token_budget=BUDGET, max_examples=2, max_steps=1, sft_weight=1.0),
                    adapter=pipeline["out"] / "sft", profile=tiny(), model="tiny", out=tmp_path / "dpo", backend="hf")
    assert res.metrics["sft_weight"] == 1.0
    first = next(h for h in res.log_history if "loss" in h)
    assert first["rewards/margins"] == 0.0
    assert first["loss"] > math.log(2) + 0.5, first  # the tiny model's chosen NLL is several nats
