"""What a finished stage writes, reloading it, and resuming an interrupted run (same config and data only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from petool_lib.training import (  # noqa: E402
    CHECKPOINTS,
    resume_point,
    run_fingerprint,
    to_jsonable,
    train_dpo,
    train_sft,
)

from .helpers import BUDGET, tiny, tiny_stage  # noqa: E402


def test_sft_then_dpo_end_to_end(pipeline: dict[str, Any]) -> None:
    out = pipeline["out"]
    for stage in ("sft", "dpo"):
        d = out / stage
        for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "train_config.json",
                     "log_history.json", "train_stats.json", "loss.png"):
            assert (d / name).is_file(), f"{stage}/{name} missing"
        assert not (d / "checkpoints").exists()
        assert not (d / "ref").exists()  # ONE adapter, not the frozen reference copy
        stats = json.loads((d / "train_stats.json").read_text())
        assert stats["steps"] > 0 and stats["tokens_per_s"] > 0 and stats["peak_rss_mb"] > 100
        assert stats["examples"] == stats["data"]["used"] == (8 if stage == "sft" else 6)
        cfg = json.loads((d / "train_config.json").read_text())
        assert cfg["stage"] == stage and cfg["backend"] == "hf" and cfg["stage_config"]["token_budget"] == BUDGET
        assert cfg["training_args"]["lr_scheduler_type"] == "cosine"
        recorded = {k: v for k, v in cfg.items() if k != "training_args"}
        assert cfg["profile"] == "tiny" and json.loads(json.dumps(pipeline[stage].run_config)) == recorded
    sft_cfg = json.loads((out / "sft" / "adapter_config.json").read_text())
    assert sft_cfg["r"] == 8 and {m.rsplit(".", 1)[-1] for m in sft_cfg["target_modules"]} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_saved_adapter_reloads_to_identical_logits(pipeline: dict[str, Any]) -> None:
    from petool_lib.core import load_model

    for stage in ("sft", "dpo"):
        res = pipeline[stage]
        model, tok = load_model("tiny", adapter=str(res.out_dir))
        ids = tok("<|im_start|>user\nhello tools<|im_end|>\n", return_tensors="pt")["input_ids"]
        trained = res.model
        if stage == "dpo":
            trained.set_adapter("default")
        with torch.no_grad():  # compared on the CPU (on a GPU machine the trained model sits on cuda)
            a = trained(input_ids=ids.to(trained.device)).logits.float().cpu()
            b = model(input_ids=ids.to(model.device)).logits.float().cpu()
        if trained.device.type == "cpu":  # fp32 on CPU: bit-identical
            assert torch.equal(a, b), f"{stage}: max diff {(a - b).abs().max()}"
        else:  # bf16 on a GPU: the reload merges the adapter into bf16 weights, rounding differs
            assert torch.allclose(a, b, atol=2e-2), f"{stage}: max diff {(a - b).abs().max()}"
    # the DPO adapter is not the SFT adapter
    sft_model, _ = load_model("tiny", adapter=str(pipeline["sft"].out_dir))
    with torch.no_grad():
        assert not torch.equal(sft_model(input_ids=ids.to(sft_model.device)).logits.cpu(),
                               model(input_ids=ids.to(model.device)).logits.cpu())


class _Interrupt(Exception):
    pass


def _interrupt_at(step: int) -> Any:
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step == step:
                raise _Interrupt(step)

    return Stop()


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_interrupted_run_resumes_to_the_same_adapter(stage: str, pipeline: dict[str, Any], data_dir: Path,
                                                     tmp_path: Path) -> None:
    over = {"token_budget": BUDGET, "max_examples": 4, "batch_size": 1, "save_steps": 2}  # 4 steps, ckpts 2/4
    run = train_sft if stage == "sft" else train_dpo
    kw: dict[str, Any] = dict(model="tiny", profile=tiny(), backend="hf")
    if stage == "dpo":
        kw["adapter"] = pipeline["out"] / "sft"
    cfg = tiny_stage(stage, **over)
    full = run(data_dir, cfg, out=tmp_path / "full", **kw)
    with pytest.raises(_Interrupt):
        run(data_dir, cfg, out=tmp_path / "cut", callbacks=[_interrupt_at(2)], **kw)
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "cut" / "adapter_model.safetensors").exists()
    # another config must not silently resume these checkpoints
    with pytest.raises(RuntimeError, match="different run"):
        run(data_dir, tiny_stage(stage, **over, learning_rate=1e-3), out=tmp_path / "cut", **kw)
    resumed = run(data_dir, cfg, out=tmp_path / "cut", **kw)
    assert resumed.metrics["resumed_from"].endswith("checkpoint-2")
    assert resumed.metrics["steps"] == full.metrics["steps"] == 4 and resumed.metrics["steps_this_session"] == 2
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a}
    assert max(diffs.values()) == 0.0, diffs  # exact on CPU
    assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)  # and it did train


def test_resume_point_bookkeeping(tmp_path: Path) -> None:
    ckpt = tmp_path / CHECKPOINTS
    fp = run_fingerprint({"stage": "sft", "stage_config": {"lora": {"target_modules": ("q_proj",)}}}, [{"a": 1}])
    assert len(fp["rows_sha256"]) == 64 and fp != run_fingerprint(fp, [{"a": 2}])
    assert resume_point(ckpt, fp, resume=True) is None  # nothing to resume: a clean folder + the fingerprint
    assert json.loads((ckpt / "run_fingerprint.json").read_text())["stage_config"]["lora"]["target_modules"] == ["q_proj"]
    (ckpt / "checkpoint-3").mkdir()  # complete: the Trainer's state (written last) and the adapter weights
    (ckpt / "checkpoint-3" / "trainer_state.json").write_text('{"global_step": 3}')
    (ckpt / "checkpoint-3" / "adapter_model.safetensors").write_bytes(b"weights")
    assert resume_point(ckpt, fp, resume=True).endswith("checkpoint-3")  # tuples compare as JSON lists
    with pytest.raises(RuntimeError, match="different run"):
        resume_point(ckpt, dict(fp, seed=1), resume=True)
    assert resume_point(ckpt, fp, resume=False) is None and not (ckpt / "checkpoint-3").exists()


def test_to_jsonable() -> None:
    assert to_jsonable({"a": (1, 2), 3: Path("x"), "n": None}) == {"a": (1, 2), "3": "x", "n": None}
    assert to_jsonable([Path("y"), {"k": object}]) == ["y", {"k": str(object)}]
