"""Looking at a stage from a notebook: held-out sample rows, greedy generations before / after training, their
paper-scoring verdicts, the loss (and DPO reward) curves, and freeing a model's memory between steps."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

from .config import StageConfig
from .rows import fit_row, official_rows


def sample_rows(entries: Sequence[Any], tokenizer: Any, cfg: StageConfig, n: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` held-out rows for before/after generations: official entries in a seeded order, settings cycled,
    histories trimmed to the stage's token budget like the training rows; entries that cannot fit are passed over
    (when fewer than ``n`` fit, the shortest of the rest fill up, whole)."""
    order = list(entries)
    random.Random(seed).shuffle(order)
    chosen: list[dict[str, Any]] = []
    spare: list[tuple[int, dict[str, Any]]] = []
    for row in official_rows(order):
        if len(chosen) >= n:
            break
        res = fit_row(row, "sft", tokenizer, cfg.token_budget, cfg.context)
        (chosen.append(res.row) if res.fits else spare.append((res.tokens, res.row)))
    chosen += [r for _, r in sorted(spare, key=lambda x: x[0])][: n - len(chosen)]
    return chosen


def generate(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], max_new_tokens: int = 64) -> list[str]:
    """Greedy completions of each row's prompt (chat template with generation prompt)."""
    import torch

    device = next(model.parameters()).device
    outs = []
    for r in rows:
        text = tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        enc = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        outs.append(tokenizer.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return outs


def compare_samples(entries: Sequence[Any], rows: Sequence[dict[str, Any]], **responses: list[str]) -> list[dict[str, Any]]:
    """One record per row: setting, query, ground truth and each named response with its paper-scoring verdict."""
    from ..harness.scoring import score_response

    by_id = {e.entry_id: e for e in entries}
    out = []
    for i, r in enumerate(rows):
        e = by_id[r["entry_id"]]
        rec: dict[str, Any] = {"setting": r["setting"], "query": e.query, "ground truth": r["completion"][0]["content"]}
        for name, resp in responses.items():
            score = score_response(e, resp[i], "paper")
            rec[name] = resp[i]
            rec[f"{name} tool ok"] = bool(score.tool_correct)
        out.append(rec)
    return out


def free_memory() -> None:
    """Collect garbage and empty the CUDA cache (between a sample model and training on a GPU)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def plot_log_history(log_history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training loss per step (and, for DPO, reward margin and accuracy) as a PNG."""
    from ..core.figures import save_figure  # first: it selects the headless backend

    import matplotlib.pyplot as plt

    logs = [h for h in log_history if "loss" in h and "step" in h]
    panels = [("loss", "training loss")]
    if any("rewards/margins" in h for h in logs):
        panels += [("rewards/margins", "reward margin (chosen - rejected)"), ("rewards/accuracies", "reward accuracy")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        pts = [(h["step"], h[key]) for h in logs if key in h]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set_xlabel("optimizer step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path)
