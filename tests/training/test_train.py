"""Training stages on the tiny random LLaMA: SFT → DPO end to end, memorisation, reload, DPO margin, resume.

Fixture data are built here from the OFFICIAL test set (independent of the synthesis code): a row is a setting's
system prompt + the query, the assistant turn is the ground-truth call; the rejected call swaps the tool name
for another member of the entry's functional group.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from petool_lib.core.data import DataError, SETTINGS, load_test_set  # noqa: E402
from petool_lib.core.prompts import parse_prompt, render_prompt  # noqa: E402
from petool_lib.training import train as T  # noqa: E402
from petool_lib.training.config import stage_config  # noqa: E402

BUDGET = 900  # tokens per row in these tests (short rows = fast tests)


def _official_fixture_rows(n_entries: int = 12) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries = load_test_set()
    # the entries with the shortest candidate lists, so that rows fit BUDGET once their history is trimmed
    entries = sorted(entries, key=lambda e: (len(render_prompt("preferred", [], e.candidates)), e.entry_id))
    entries = [e for e in entries if len(set(e.group_names) - {e.ground_truth["tool_name"]}) >= 1][:n_entries]
    sft, dpo = [], []
    for i, e in enumerate(entries):
        for s in SETTINGS:
            prompt = [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}]
            gt = json.dumps(e.ground_truth, ensure_ascii=False)
            sft.append({"prompt": prompt, "completion": [{"role": "assistant", "content": gt}],
                        "setting": s, "entry_id": e.entry_id})
            others = sorted(set(e.group_names) - {e.ground_truth["tool_name"]})
            rejected = json.dumps(dict(e.ground_truth, tool_name=others[i % len(others)]), ensure_ascii=False)
            dpo.append({"prompt": prompt, "chosen": [{"role": "assistant", "content": gt}],
                        "rejected": [{"role": "assistant", "content": rejected}], "setting": s, "entry_id": e.entry_id})
    return sft, dpo


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("data")
    sft, dpo = _official_fixture_rows()
    _write_jsonl(d / "sft.jsonl", sft)
    _write_jsonl(d / "dpo.jsonl", dpo)
    return d


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from petool_lib.core.models import resolve_model

    return T._load_tokenizer(resolve_model("tiny"))


@pytest.fixture(scope="module")
def pipeline(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One tiny SFT → DPO run shared by several tests."""
    out = tmp_path_factory.mktemp("models")
    sft = T.train_sft(data_dir, model="tiny", out=out / "sft", profile="tiny", backend="hf",
                      overrides={"token_budget": BUDGET, "max_examples": 8})
    dpo = T.train_dpo(data_dir, adapter=out / "sft", model="tiny", out=out / "dpo", profile="tiny", backend="hf",
                      overrides={"token_budget": BUDGET, "max_examples": 6, "epochs": 2})
    return {"out": out, "sft": sft, "dpo": dpo}


# --- data preparation -------------------------------------------------------------------------------------------


def test_load_rows_errors_name_file_line_and_field(tmp_path: Path) -> None:
    good = {"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "{}"}]}
    (tmp_path / "sft.jsonl").write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"sft.jsonl:2: not valid JSON"):
        T.load_rows(tmp_path, "sft")
    (tmp_path / "sft.jsonl").write_text(json.dumps({"prompt": good["prompt"]}) + "\n")
    with pytest.raises(DataError, match=r"sft.jsonl:1: missing field 'completion'"):
        T.load_rows(tmp_path, "sft")
    bad_role = dict(good, completion=[{"role": "user", "content": "x"}])
    (tmp_path / "sft.jsonl").write_text(json.dumps(bad_role) + "\n")
    with pytest.raises(DataError, match=r"'completion'\[0\] has role 'user'"):
        T.load_rows(tmp_path, "sft")
    with pytest.raises(DataError, match="no dpo.jsonl"):
        T.load_rows(tmp_path, "dpo")


def test_fit_row_drops_oldest_history_only(data_dir: Path, tokenizer: Any) -> None:
    row = next(r for r in T.load_rows(data_dir, "sft") if len(parse_prompt(r["prompt"][0]["content"]).history) > 5)
    full = T.count_tokens(tokenizer, row["prompt"] + row["completion"])
    assert full > BUDGET
    res = T.fit_row(row, "sft", tokenizer, BUDGET)
    assert res.fits and res.dropped > 0 and res.tokens <= BUDGET
    assert res.tokens == T.count_tokens(tokenizer, res.row["prompt"] + res.row["completion"])
    before, after = parse_prompt(row["prompt"][0]["content"]), parse_prompt(res.row["prompt"][0]["content"])
    assert after.history == before.history[res.dropped:]  # the oldest items went, the rest is intact
    assert after.candidates == before.candidates and after.format_text == before.format_text
    assert after.task_text == before.task_text
    assert res.row["prompt"][1] == row["prompt"][1] and res.row["completion"] == row["completion"]
    # one item fewer would not have fitted (minimal trimming)
    longer = render_prompt(before.setting, before.history[res.dropped - 1:], before.candidates)
    msgs = [{"role": "system", "content": longer}, row["prompt"][1]] + row["completion"]
    assert T.count_tokens(tokenizer, msgs) > BUDGET
    # a budget below the empty-history size cannot be met: the row is returned untouched, flagged
    tiny_budget = T.fit_row(row, "sft", tokenizer, 100)
    assert not tiny_budget.fits and tiny_budget.row is row


def test_prepare_rows_counts_skipped_and_kept(data_dir: Path, tokenizer: Any) -> None:
    rows = T.load_rows(data_dir, "dpo")[:6]
    cfg = stage_config("tiny", "dpo", token_budget=100, max_examples=None)
    out, stats = T.prepare_rows(rows, "dpo", tokenizer, cfg)
    assert out == [] and stats.too_long_skipped == 6 and stats.considered == 6 and stats.used == 0
    cfg = stage_config("tiny", "dpo", token_budget=100, too_long="keep", max_examples=None)
    out, stats = T.prepare_rows(rows, "dpo", tokenizer, cfg)
    assert len(out) == 6 and stats.too_long_kept == 6 and stats.trimmed_rows == 0
    assert set(out[0]) == {"prompt", "chosen", "rejected"}
    cfg = stage_config("tiny", "dpo", token_budget=BUDGET, max_examples=4)
    out, stats = T.prepare_rows(T.load_rows(data_dir, "dpo"), "dpo", tokenizer, cfg)
    assert len(out) == 4 and stats.used == 4 and stats.considered >= 4
    assert stats.considered == stats.used + stats.too_long_skipped
    assert stats.not_considered == stats.source_rows - stats.considered
    assert sorted(stats.by_setting.values()) in ([1, 1, 2], [2, 2])  # setting-balanced prefix


def test_balanced_order_is_seeded_and_interleaved() -> None:
    rows = [{"setting": s} for s in ["a"] * 4 + ["b"] * 4]
    o1, o2, o3 = T.balanced_order(rows, 0), T.balanced_order(rows, 0), T.balanced_order(rows, 1)
    assert o1 == o2 and sorted(o1) == list(range(8))
    assert [rows[i]["setting"] for i in o1] == ["a", "b"] * 4
    assert o1 != o3


# --- stages ----------------------------------------------------------------------------------------------------


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
    sft_cfg = json.loads((out / "sft" / "adapter_config.json").read_text())
    assert sft_cfg["r"] == 8 and {m.rsplit(".", 1)[-1] for m in sft_cfg["target_modules"]} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


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
    ref = T.adapter_state(pipeline["dpo"].model, "ref")
    assert ref.keys() == sft_w.keys()
    assert all(torch.equal(ref[k], v) for k, v in sft_w.items())


def test_saved_adapter_reloads_to_identical_logits(pipeline: dict[str, Any]) -> None:
    from petool_lib.core.models import load_model

    for stage in ("sft", "dpo"):
        res = pipeline[stage]
        model, tok = load_model("tiny", adapter=str(res.out_dir))
        ids = tok("<|im_start|>user\nhello tools<|im_end|>\n", return_tensors="pt")["input_ids"]
        trained = res.model
        if stage == "dpo":
            trained.set_adapter("default")
        with torch.no_grad():
            a = trained(input_ids=ids).logits
            b = model(input_ids=ids).logits
        assert torch.equal(a, b), f"{stage}: max diff {(a - b).abs().max()}"
    # the DPO adapter is not the SFT adapter
    sft_model, _ = load_model("tiny", adapter=str(pipeline["sft"].out_dir))
    with torch.no_grad():
        assert not torch.equal(sft_model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_dpo_raises_chosen_minus_rejected_margin(pipeline: dict[str, Any], data_dir: Path, tokenizer: Any) -> None:
    from petool_lib.core.models import load_model

    cfg = stage_config("tiny", "dpo", token_budget=BUDGET, max_examples=6)
    pairs, _ = T.prepare_rows(T.load_rows(data_dir, "dpo"), "dpo", tokenizer, cfg)
    sft_model, tok = load_model("tiny", adapter=str(pipeline["sft"].out_dir))
    dpo_model, _ = load_model("tiny", adapter=str(pipeline["dpo"].out_dir))
    before = T.preference_margins(sft_model, tok, pairs)
    after = T.preference_margins(dpo_model, tok, pairs)
    gain = sum(after) / len(after) - sum(before) / len(before)
    print(f"mean log p(chosen) - log p(rejected): SFT {sum(before)/len(before):.4f} -> DPO {sum(after)/len(after):.4f}")
    assert gain > 0.05, f"mean margin {sum(before)/len(before):.3f} -> {sum(after)/len(after):.3f}"
    hist = [h for h in pipeline["dpo"].log_history if "rewards/margins" in h]
    assert hist[-1]["rewards/margins"] > 0


@pytest.fixture(scope="module")
def wide_init_tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny LLaMA's architecture with initializer_range 0.3 instead of 0.02.

    With the default 0.02 init, the frozen (tied) output embeddings are so small that no LoRA update can push a
    logit far above the 49k others (the loss floor is ~9.5 nats), so memorisation can only be shown with a
    larger init. Built locally and seeded, like ``models._build_tiny``.
    """
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from petool_lib.core.models import TINY_CONFIG, resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("tiny"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, initializer_range=0.3, **TINY_CONFIG)
    out = tmp_path_factory.mktemp("tiny_wide")
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_sft_drives_loss_near_zero_on_a_handful(wide_init_tiny: str, tmp_path: Path) -> None:
    entries = load_test_set(limit=3)
    rows = []
    for e, s in zip(entries, SETTINGS):  # short PEToolBench prompts: empty history, the answer + one distractor
        gt = e.ground_truth
        cands = [c for c in e.candidates if c["tool_name"] == gt["tool_name"]][:1] + \
                [c for c in e.candidates if c["tool_name"] != gt["tool_name"]][:1]
        rows.append({"prompt": [{"role": "system", "content": render_prompt(s, [], cands)},
                                {"role": "user", "content": e.query}],
                     "completion": [{"role": "assistant", "content": json.dumps(gt, ensure_ascii=False)}],
                     "setting": s})
    _write_jsonl(tmp_path / "sft.jsonl", rows)
    res = T.train_sft(tmp_path, model=wide_init_tiny, out=tmp_path / "sft", profile="tiny", backend="hf",
                      overrides={"token_budget": None, "max_examples": 3, "batch_size": 3, "epochs": 25,
                                 "learning_rate": 3e-2, "warmup_ratio": 0.0, "save_steps": 1000,
                                 "lora": {"r": 16, "alpha": 32}})
    losses = [h["loss"] for h in res.log_history if "loss" in h]
    assert len(losses) == 25
    assert losses[0] > 5 and losses[-1] < 0.1, losses[::5]


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
    run = T.train_sft if stage == "sft" else T.train_dpo
    kw: dict[str, Any] = dict(model="tiny", profile="tiny", backend="hf", overrides=over)
    if stage == "dpo":
        kw["adapter"] = pipeline["out"] / "sft"
    full = run(data_dir, out=tmp_path / "full", **kw)
    with pytest.raises(_Interrupt):
        run(data_dir, out=tmp_path / "cut", callbacks=[_interrupt_at(2)], **kw)
    assert (tmp_path / "cut" / "checkpoints" / "checkpoint-2").is_dir()
    assert not (tmp_path / "cut" / "adapter_model.safetensors").exists()
    # another config must not silently resume these checkpoints
    with pytest.raises(RuntimeError, match="different run"):
        run(data_dir, out=tmp_path / "cut", **dict(kw, overrides=dict(over, learning_rate=1e-3)))
    resumed = run(data_dir, out=tmp_path / "cut", **kw)
    assert resumed.metrics["resumed_from"].endswith("checkpoint-2")
    assert resumed.metrics["steps"] == full.metrics["steps"] == 4 and resumed.metrics["steps_this_session"] == 2
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys()
    diffs = {k: float((a[k] - b[k]).abs().max()) for k in a}
    assert max(diffs.values()) == 0.0, diffs  # exact on CPU
    assert any(float(v.abs().max()) > 0 for k, v in a.items() if "lora_B" in k)  # and it did train


def test_cli_tiny_and_unsloth_error(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = T.main(["sft", "--data", str(data_dir), "--model", "tiny", "--out", str(tmp_path), "--profile", "tiny",
                 "--backend", "hf", "--max-steps", "1", "--max-examples", "2", "--token-budget", str(BUDGET)])
    assert rc == 0 and (tmp_path / "sft" / "adapter_model.safetensors").is_file()
    assert json.loads((tmp_path / "sft" / "train_stats.json").read_text())["steps"] == 1
    if not torch.cuda.is_available():
        rc = T.main(["dpo", "--data", str(data_dir), "--model", "tiny", "--adapter", str(tmp_path / "sft"),
                     "--out", str(tmp_path), "--profile", "tiny", "--backend", "unsloth"])
        assert rc == 2 and "needs a CUDA GPU" in capsys.readouterr().err
    rc = T.main(["dpo", "--data", str(data_dir), "--model", "tiny", "--adapter", str(tmp_path / "nope"),
                 "--out", str(tmp_path), "--profile", "tiny", "--backend", "hf"])
    assert rc == 2 and "not a PEFT adapter directory" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_cpu_profile_smoke(data_dir: Path, tmp_path: Path) -> None:
    """The real embedded model through both stages on the cpu profile settings (a few steps)."""
    from petool_lib.core.models import load_model

    sft = T.train_sft(data_dir, model="smollm2", out=tmp_path / "sft", profile="cpu", backend="hf", max_steps=2,
                      overrides={"max_examples": 8})
    assert sft.metrics["steps"] == 2 and sft.metrics["first_loss"] < 3  # an instruct model already half-knows JSON
    dpo = T.train_dpo(data_dir, adapter=tmp_path / "sft", model="smollm2", out=tmp_path / "dpo", profile="cpu",
                      backend="hf", max_steps=1, overrides={"max_examples": 2})
    assert dpo.metrics["step0_reference_check"]["equal"] and dpo.metrics["reference_unchanged"]
    model, tok = load_model("smollm2", adapter=str(tmp_path / "dpo"))
    ids = tok("<|im_start|>user\nhello<|im_end|>\n", return_tensors="pt")["input_ids"]
    dpo.model.set_adapter("default")
    saved, trained = T.adapter_state(model, "default"), T.adapter_state(dpo.model, "default")
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    # the cpu profile trains under bf16 autocast, which accelerate leaves wrapped around the trained model's forward
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model(input_ids=ids).logits, dpo.model(input_ids=ids).logits)
