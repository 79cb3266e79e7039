"""The steps both stages share: resolved inputs only, and the real embedded model through both stages (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from petool_lib.training import (  # noqa: E402
    SFTRunner,
    StageRunner,
    adapter_state,
    load_training_profile,
    stage_config,
    train_dpo,
    train_sft,
)

from .helpers import tiny, tiny_stage  # noqa: E402


def test_the_runner_takes_resolved_objects_not_names(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="profile must be a Profile"):
        train_sft(tmp_path, tiny_stage("sft"), profile="tiny", model="tiny", out=tmp_path / "o")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cfg must be a StageConfig"):
        train_sft(tmp_path, "tiny", profile=tiny(), model="tiny", out=tmp_path / "o")  # type: ignore[arg-type]
    runner = SFTRunner(tmp_path, tiny_stage("sft"), profile=tiny(), model="tiny", out=tmp_path / "o", backend="hf")
    assert isinstance(runner, StageRunner) and runner.stage == "sft" and runner.out == tmp_path / "o"
    assert runner.run_config()["profile"] == "tiny" and runner.run_config()["adapter"] is None


@pytest.mark.slow
def test_smollm2_cpu_profile_smoke(data_dir: Path, tmp_path: Path) -> None:
    """The real embedded model through both stages on the cpu profile settings (a few steps)."""
    from petool_lib.core import load_model

    cpu = load_training_profile("cpu")
    sft = train_sft(data_dir, stage_config(cpu, "sft", max_steps=2, max_examples=8), profile=cpu, model="smollm2",
                    out=tmp_path / "sft", backend="hf")
    assert sft.metrics["steps"] == 2 and sft.metrics["first_loss"] < 3  # an instruct model already half-knows JSON
    dpo = train_dpo(data_dir, stage_config(cpu, "dpo", max_steps=1, max_examples=2), adapter=tmp_path / "sft",
                    profile=cpu, model="smollm2", out=tmp_path / "dpo", backend="hf")
    assert dpo.metrics["step0_reference_check"]["equal"] and dpo.metrics["reference_unchanged"]
    model, tok = load_model("smollm2", adapter=str(tmp_path / "dpo"))
    ids = tok("<|im_start|>user\nhello<|im_end|>\n", return_tensors="pt")["input_ids"]
    dpo.model.set_adapter("default")
    saved, trained = adapter_state(model, "default"), adapter_state(dpo.model, "default")
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    # the cpu profile trains under bf16 autocast, which accelerate leaves wrapped around the trained model's forward
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model(input_ids=ids).logits, dpo.model(input_ids=ids).logits)
