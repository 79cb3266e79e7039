"""Training throughput benchmark: the ``cpu`` profile against TRL's defaults, same model, same rows.

Each variant runs a few optimizer steps in a fresh subprocess (so peak RSS is its own) and reports input tokens
per second of training wall time and peak resident memory. Variants:

* SFT ``cpu-profile`` — our config (LoRA r8 all-linear, bf16 autocast, no gradient checkpointing, batch 1×4);
* SFT ``trl-defaults+lora`` — ``SFTConfig()`` defaults (bf16 autocast, gradient checkpointing, batch 8) with the
  same LoRA; ``max_length=None`` instead of 1024, because 1024 would truncate every completion away;
* SFT ``trl-defaults-full`` — ``SFTConfig()`` defaults, full fine-tuning (TRL's default without ``peft_config``);
* DPO ``cpu-profile`` and ``trl-defaults+lora`` — the same comparison for ``DPOConfig`` (fresh LoRA adapter,
  reference = the base model with adapters disabled).

The rows are official test entries rendered as SFT/DPO rows and trimmed by the ``cpu`` profile to its token
budget (throughput only: nothing trained here is used anywhere). Usage::

    python -m petool_lib.benchmarks.train --out outputs/bench_train.json [--model smollm2] [--steps 2] [--stages sft,dpo]

Writes the JSON and a PNG next to it. Timings on a shared machine are inflated by other processes: the JSON
records the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..core.io import read_json, write_json

VARIANTS: dict[str, tuple[str, ...]] = {
    "sft": ("cpu-profile", "trl-defaults+lora", "trl-defaults-full"),
    "dpo": ("cpu-profile", "trl-defaults+lora"),
}


def bench_rows(model: str, n: int, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
    """SFT and DPO rows from official entries, trimmed like the ``cpu`` profile (same rows for every variant)."""
    from ..core import load_test_set, resolve_model
    from ..training import load_tokenizer, load_training_profile, official_rows, prepare_rows, stage_config

    tok = load_tokenizer(resolve_model(model))
    entries = load_test_set()
    sft_all = official_rows(entries)
    dpo_all = []
    for row, e in zip(sft_all, entries):
        others = sorted(set(e.group_names) - {e.ground_truth["tool_name"]})
        if others:
            rejected = json.dumps(dict(e.ground_truth, tool_name=others[0]), ensure_ascii=False)
            dpo_all.append({"prompt": row["prompt"], "chosen": row["completion"],
                            "rejected": [{"role": "assistant", "content": rejected}], "setting": row["setting"],
                            "entry_id": row["entry_id"], "case": row["case"]})
    cpu = load_training_profile("cpu")
    sft, _ = prepare_rows(sft_all, "sft", tok, stage_config(cpu, "sft", max_examples=n), seed)
    dpo, _ = prepare_rows(dpo_all, "dpo", tok, stage_config(cpu, "dpo", max_examples=n), seed)
    return {"sft": sft, "dpo": dpo}


def run_variant(stage: str, variant: str, rows: list[dict[str, Any]], model: str, steps: int, seed: int,
                workdir: str) -> dict[str, Any]:
    """Train ``steps`` optimizer steps of one variant in this process and measure it."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    from ..core import resolve_model
    from ..training import (ResourceMonitor, dpo_kwargs, load_base_model, load_tokenizer, lora_config, sft_kwargs,
                            stage_config)
    from ..training.backend import decoder_layers
    from ..training.trl_compat import ensure_fused_lm_head

    ensure_fused_lm_head("cpu")  # the benchmark trains on CPU (use_cpu=True) even where Triton is installed
    path = resolve_model(model)
    tok = load_tokenizer(path)
    cfg = stage_config("cpu", stage, max_steps=steps)
    # one deviation from TRL's defaults: max_length=None. The default 1024 truncates the ~1.25k-token rows from the
    # end, which cuts every completion away, and TRL then drops all rows (nothing left to train on).
    common = dict(output_dir=workdir, max_steps=steps, save_strategy="no", report_to="none", use_cpu=True,
                  include_num_input_tokens_seen="non_padding", seed=seed, logging_steps=1, max_length=None)
    if variant == "cpu-profile":
        kwargs = (sft_kwargs if stage == "sft" else dpo_kwargs)(cfg, workdir, seed, "cpu", False)
        kwargs.update(save_strategy="no")
    else:
        kwargs = common
    args = (SFTConfig if stage == "sft" else DPOConfig)(**kwargs)
    layers = decoder_layers(path) if cfg.lora.top_layers else None  # the profile's LoRA on its top layers only
    peft = None if variant == "trl-defaults-full" else lora_config(cfg.lora, layers)
    monitor = ResourceMonitor()
    trainer_cls = SFTTrainer if stage == "sft" else DPOTrainer
    trainer = trainer_cls(model=load_base_model(path, "cpu"), args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, peft_config=peft, callbacks=[monitor.callback()])
    try:
        trainer.train()
    finally:
        monitor.stop()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {
        "stage": stage, "variant": variant, "steps": int(trainer.state.global_step),
        "examples_per_step": args.per_device_train_batch_size * args.gradient_accumulation_steps,
        "settings": {"bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing,
                     "per_device_train_batch_size": args.per_device_train_batch_size,
                     "gradient_accumulation_steps": args.gradient_accumulation_steps,
                     "learning_rate": args.learning_rate, "max_length": args.max_length,
                     "lora": peft is not None},
        "final_loss": losses[-1] if losses else None,
        **monitor.results,
    }


def plot(results: list[dict[str, Any]], path: Path) -> Path:
    from ..core.figures import save_figure  # first: it selects the headless backend

    import matplotlib.pyplot as plt

    labels = [f"{r['stage']}\n{r['variant']}" for r in results]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in ((axes[0], "tokens_per_s_after_first_step", "input tokens / s after the warm-up step"),
                           (axes[1], "peak_rss_mb", "peak RSS, MiB (lower is better)")):
        vals = [r.get(key) or r.get("tokens_per_s") or 0 for r in results] if key.startswith("tokens") else \
            [r.get(key) or 0 for r in results]
        colors = ["tab:blue" if r["variant"] == "cpu-profile" else "tab:gray" for r in results]
        ax.bar(range(len(vals)), vals, color=colors)
        ax.set_xticks(range(len(vals)), labels, fontsize=8)
        ax.set_title(title)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    fig.suptitle("Training throughput: cpu profile vs TRL defaults (same rows, CPU)")
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m petool_lib.benchmarks.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/bench_train.json")
    p.add_argument("--model", default="smollm2")
    p.add_argument("--steps", type=int, default=2, help="optimizer steps per variant (the first is warm-up)")
    p.add_argument("--stages", default="sft,dpo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variant", nargs=2, metavar=("STAGE", "VARIANT"), help=argparse.SUPPRESS)  # worker mode
    p.add_argument("--rows", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.variant:  # worker: one variant in a fresh process
        stage, variant = args.variant
        rows = read_json(args.rows)
        with tempfile.TemporaryDirectory() as wd:
            res = run_variant(stage, variant, rows, args.model, args.steps, args.seed, wd)
        print("RESULT " + json.dumps(res))
        return 0

    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in VARIANTS]
    if bad:
        p.error(f"unknown stage(s) {bad}; expected sft,dpo")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    load_before = os.getloadavg()
    # enough rows for the largest batch (TRL default: 8 per step)
    rows = bench_rows(args.model, n=8 * args.steps, seed=args.seed)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as td:
        for stage in stages:
            rows_path = Path(td) / f"{stage}.json"
            write_json(rows_path, rows[stage])
            for variant in VARIANTS[stage]:
                print(f"[bench-train] {stage} / {variant}: {args.steps} steps ...", flush=True)
                cmd = [sys.executable, "-m", "petool_lib.benchmarks.train", "--variant", stage, variant, "--rows",
                       str(rows_path), "--model", args.model, "--steps", str(args.steps), "--seed", str(args.seed)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    results.append({"stage": stage, "variant": variant, "error": proc.stderr.strip()[-2000:]})
                    print(f"  failed (exit {proc.returncode})", flush=True)
                    continue
                res = json.loads(line[len("RESULT "):])
                results.append(res)
                print(f"  {res['tokens_per_s']} tokens/s ({res['tokens_per_s_after_first_step']} after the first step), "
                      f"peak RSS {res['peak_rss_mb']} MiB, "
                      f"{res['train_seconds']} s", flush=True)
    report = {
        "command": "python -m petool_lib.benchmarks.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": args.model, "steps_per_variant": args.steps,
        "rows": {s: len(rows[s]) for s in stages},
        "machine": {"cpu_count": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
                    "note": "tokens/s are inflated by other processes on a shared machine; see the load averages"},
        "total_seconds": round(time.time() - t0, 1),
        "results": results,
    }
    write_json(out, report, indent=1)
    ok = [r for r in results if "error" not in r]
    if ok:
        plot(ok, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
