"""The SFT stage: the loss really goes down to ~0 on a handful of rows (memorisation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from petool_lib.core import SETTINGS, render_prompt  # noqa: E402
from petool_lib.training import train_sft  # noqa: E402

from .helpers import BUDGET, tiny, tiny_stage, write_rows  # noqa: E402


@pytest.fixture(scope="module")
def wide_init_tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny LLaMA's architecture with initializer_range 0.3 instead of 0.02.

    With the default 0.02 init, the frozen (tied) output embeddings are so small that no LoRA update can push a
    logit far above the 49k others (the loss floor is ~9.5 nats), so memorisation can only be shown with a
    larger init. Built locally and seeded, like ``models._build_tiny``.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from petool_lib.core import TINY_CONFIG, resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, initializer_range=0.3, **TINY_CONFIG)
    out = tmp_path_factory.mktemp("tiny_wide")
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_sft_drives_loss_near_zero_on_a_handful(wide_init_tiny: str, tmp_path: Path, official) -> None:
    entries = official[:3]
    rows = []
    for e, s in zip(entries, SETTINGS):  # short PEToolBench prompts: empty history, the answer + one distractor
        gt = e.ground_truth
        cands = [c for c in e.candidates if c["tool_name"] == gt["tool_name"]][:1] + \
                [c for c in e.candidates if c["tool_name"] != gt["tool_name"]][:1]
        rows.append({"prompt": [{"role": "system", "content": render_prompt(s, [], cands)},
                                {"role": "user", "content": e.query}],
                     "completion": [{"role": "assistant", "content": json.dumps(gt, ensure_ascii=False)}],
                     "setting": s})
    write_rows(tmp_path / "sft.jsonl", rows)
    cfg = tiny_stage("sft", token_budget=None, max_examples=3, batch_size=3, epochs=25, learning_rate=3e-2,
                     warmup_ratio=0.0, save_steps=1000, lora={"r": 16, "alpha": 32})
    res = train_sft(tmp_path, cfg, profile=tiny(), model=wide_init_tiny, out=tmp_path / "sft", backend="hf")
    losses = [h["loss"] for h in res.log_history if "loss" in h]
    # all three rows train (the third, ~1.5k tokens, fits the tiny profile's budget only with shortened descriptions)
    assert res.metrics["data"]["used"] == 3 and res.metrics["data"]["too_long_skipped"] == 0
    assert len(losses) == 25
    assert losses[0] > 5 and losses[-1] < 0.2, losses[::5]


def _one_short_row(data: Path, e) -> None:
    """``data/sft.jsonl`` with one preferred-only row of entry ``e``: no history, its first two candidates."""
    write_rows(data / "sft.jsonl", [
        {"prompt": [{"role": "system", "content": render_prompt("preferred", [], e.candidates[:2])},
                    {"role": "user", "content": e.query}],
         "completion": [{"role": "assistant", "content": json.dumps(e.ground_truth, ensure_ascii=False)}],
         "setting": "preferred"}])


def test_top_layers_adapter_touches_only_the_last_layer(tmp_path: Path, official) -> None:
    """``lora.top_layers: 1`` on the 2-layer tiny LLaMA: every LoRA tensor sits in layer 1, none in layer 0."""
    _one_short_row(tmp_path, official[0])
    cfg = tiny_stage("sft", token_budget=None, max_examples=1, epochs=1, save_steps=1000, lora={"top_layers": 1})
    res = train_sft(tmp_path, cfg, profile=tiny(), model="tiny", out=tmp_path / "sft", backend="hf")
    names = [n for n, p in res.model.named_parameters() if "lora_" in n]
    assert names and all(".layers.1." in n for n in names), names
    assert json.loads((tmp_path / "sft" / "adapter_config.json").read_text())["layers_to_transform"] == [1]


def test_keep_checkpoints_keeps_every_checkpoint_and_the_default_removes_them(tmp_path: Path, official) -> None:
    from petool_lib.training.checkpoints import CHECKPOINTS, checkpoint_dirs

    _one_short_row(tmp_path, official[0])
    cfg = tiny_stage("sft", token_budget=None, max_examples=1, max_steps=3, save_steps=1)
    train_sft(tmp_path, cfg, profile=tiny(), model="tiny", out=tmp_path / "kept", backend="hf", keep_checkpoints=True)
    assert [p.name for p in checkpoint_dirs(tmp_path / "kept" / CHECKPOINTS)] == [
        "checkpoint-3", "checkpoint-2", "checkpoint-1"]
    train_sft(tmp_path, cfg, profile=tiny(), model="tiny", out=tmp_path / "default", backend="hf")
    assert checkpoint_dirs(tmp_path / "default" / CHECKPOINTS) == []
    assert (tmp_path / "default" / "adapter_config.json").is_file()


def test_sft_continues_an_adapter_instead_of_a_fresh_one(pipeline, data_dir: Path, tmp_path: Path) -> None:
    """``adapter``: the curriculum's next phase trains the given adapter further — it starts from its weights, keeps
    its LoRA shape (whatever the stage's ``lora`` block says) and changes it."""
    from safetensors.torch import load_file

    src_dir = pipeline["out"] / "sft"
    cfg = tiny_stage("sft", token_budget=BUDGET, max_examples=2, batch_size=2, learning_rate=1e-5, max_steps=1,
                     lora={"r": 4})
    res = train_sft(data_dir, cfg, profile=tiny(), model="tiny", out=tmp_path / "phase2", backend="hf",
                    adapter=src_dir)
    src = load_file(str(src_dir / "adapter_model.safetensors"))
    cont = load_file(str(res.out_dir / "adapter_model.safetensors"))
    assert cont.keys() == src.keys() and all(cont[k].shape == v.shape for k, v in src.items())
    assert json.loads((res.out_dir / "adapter_config.json").read_text())["r"] == \
        json.loads((src_dir / "adapter_config.json").read_text())["r"] != 4
    lora_b = [k for k in src if "lora_B" in k]
    assert lora_b and max(float(src[k].abs().max()) for k in lora_b) > 1e-3  # the source was trained (B != 0)
    # one Adam step at lr 1e-5 moves each weight by about 1e-5: the result is the source, nudged
    assert max(float((cont[k] - src[k]).abs().max()) for k in src) < 1e-4
    assert any(not torch.equal(cont[k], src[k]) for k in src)
    with pytest.raises(FileNotFoundError, match="SFT continues only from an adapter"):
        train_sft(data_dir, cfg, profile=tiny(), model="tiny", out=tmp_path / "x", backend="hf",
                  adapter=tmp_path / "nope")
