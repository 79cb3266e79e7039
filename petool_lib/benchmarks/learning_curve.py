"""Learning curve: Tool Acc and Param Acc on a held-out synthesized slice after N training rows, measured from ONE
SFT run, to choose how many training rows a profile needs.

The run trains the profile's SFT stage on ``max(sizes)`` rows (``max_examples=max(sizes)``, one epoch) and saves a
checkpoint after the optimizer step at which exactly N rows have been seen, for every N in ``sizes`` (rows per step
= ``batch_size x grad_accum``; a size that is not a multiple of it is an error). Each checkpoint's adapter, and the
base model for N = 0, then predicts the same seeded subset of the synthesized test entries (``limit`` per setting)
and is scored with the paper's scoring. Caveat: the learning-rate schedule spans the whole run, so a point N <
max(sizes) is the model mid-schedule (its rate not yet annealed), not a run trained to completion on N rows; the
rows seen by step k are the trainer's seeded shuffle of the ``max(sizes)`` rows, not a prefix.

CLI (``python -m petool_lib learning-curve`` runs the same)::

    python -m petool_lib.benchmarks.learning_curve --data DIR [--test PATH] --out DIR [--profile cpu] [--model M]
        [--sizes 32,64,128] [--limit 20] [--mode rank] [--max-prompt-tokens 1536] [--seed 0]

Writes into ``--out``: ``sft/`` (the run: final adapter and ``checkpoints/checkpoint-<step>/``, all kept),
``predictions/rows-<N>.jsonl``, ``learning_curve.json`` and ``learning_curve.png`` (both rewritten after every
point, so a long run leaves partial results). A rerun with the same arguments resumes the training from its last
checkpoint and the predictions from their caches (``--no-resume`` starts over).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm.auto import tqdm

from ..core.context import CONTEXT_MODES
from ..core.data import DataError, load_test_set, normalize_setting, resolve_settings, select_subset
from ..core.io import read_json, write_json

RESULT_FILE = "learning_curve.json"
FIGURE_FILE = "learning_curve.png"
TRAIN_DIR = "sft"  # <out>/sft: the SFT run (its checkpoints under <out>/sft/checkpoints)
STEPS_FILE = "learning_curve_steps.json"  # in the checkpoints folder: time / tokens / loss at every saved step
DEFAULT_SIZES = (32, 64, 128)


# --- the plan ------------------------------------------------------------------------------------------------


def parse_sizes(text: str | Sequence[int]) -> list[int]:
    """``"32,64,128"`` (or a sequence) -> sorted distinct positive row counts (0, the base model, is always a point
    and may be listed); a negative or non-integer size is an error."""
    items = [s.strip() for s in text.split(",") if s.strip()] if isinstance(text, str) else list(text)
    sizes: set[int] = set()
    for s in items:
        try:
            n = int(s)
        except (TypeError, ValueError):
            raise ValueError(f"size {s!r} is not an integer number of rows") from None
        if n < 0 or isinstance(s, float) and s != n:
            raise ValueError(f"size {s!r} is not a non-negative integer number of rows")
        if n > 0:
            sizes.add(n)
    if not sizes:
        raise ValueError("no training size given: pass at least one positive number of rows (e.g. 32,64,128)")
    return sorted(sizes)


def plan_steps(sizes: Sequence[int], rows_per_step: int) -> dict[int, int]:
    """``{rows: optimizer step}`` for every size; a size that is not a multiple of ``rows_per_step`` is a
    :class:`ValueError` naming it and the step size."""
    if rows_per_step < 1:
        raise ValueError(f"rows per step must be >= 1, got {rows_per_step}")
    sizes = parse_sizes(sizes)
    bad = [n for n in sizes if n % rows_per_step]
    if bad:
        raise ValueError(f"size(s) {', '.join(map(str, bad))} not a multiple of the {rows_per_step} rows per optimizer "
                         f"step (batch_size x grad_accum): use multiples of {rows_per_step}")
    return {n: n // rows_per_step for n in sizes}


# --- saving a checkpoint at the chosen steps --------------------------------------------------------------------


class StepRecorder:
    """Which optimizer steps get a checkpoint, and the training time / input tokens / loss when each was reached.

    Plain Python; :meth:`callback` wraps it in a transformers ``TrainerCallback`` for the runner's ``callbacks``.
    It alone decides saving: a checkpoint after each chosen step and no other (``save_steps`` and the save at the
    end are overridden), and none is rotated away (``save_total_limit`` is lifted on the trainer's arguments).
    ``train_seconds`` is cumulative training time without the time spent writing checkpoints; the records go to
    ``path`` after every save, so a resumed run keeps the times of the steps it does not redo.
    """

    def __init__(self, step_rows: Mapping[int, int], path: str | Path | None = None) -> None:
        self.step_rows = dict(step_rows)  # optimizer step -> rows seen
        self.path = Path(path) if path is not None else None
        self.records: dict[int, dict[str, Any]] = {}
        self._t0 = 0.0
        self._offset: float | None = 0.0
        self._paused = 0.0
        self._save_started: float | None = None

    def begin(self, step: int, max_steps: int) -> None:
        """Training starts at ``step`` (> 0 when resumed) and will run ``max_steps`` optimizer steps."""
        last = max(self.step_rows)
        if max_steps < last:
            rows_per_step = self.step_rows[last] // last
            raise ValueError(
                f"the run has {max_steps} optimizer step(s) ({max_steps * rows_per_step} rows), fewer than the "
                f"{last} needed for {self.step_rows[last]} rows: the data has fewer rows that fit the token budget "
                f"than the largest size")
        old = read_json(self.path) if self.path is not None and self.path.is_file() else {}
        self.records = {int(k): v for k, v in old.items() if int(k) <= step}
        self._offset = 0.0 if step == 0 else (self.records.get(step) or {}).get("train_seconds")
        self._paused = 0.0
        self._t0 = time.perf_counter()

    def step_end(self, step: int, tokens_seen: int | None) -> bool:
        """An optimizer step ended; True when a checkpoint is to be saved now."""
        if step not in self.step_rows:
            return False
        now = time.perf_counter()
        seconds = None if self._offset is None else round(self._offset + now - self._t0 - self._paused, 3)
        tokens = int(tokens_seen) if tokens_seen else None
        self.records[step] = {
            "step": step, "rows": self.step_rows[step], "train_seconds": seconds, "input_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if tokens and seconds else None, "loss": None,
        }
        self._save_started = now
        return True

    def saved(self, step: int, log_history: Sequence[Mapping[str, Any]]) -> None:
        """The checkpoint of ``step`` is written: note the last logged loss, persist the records."""
        if self._save_started is not None:
            self._paused += time.perf_counter() - self._save_started
            self._save_started = None
        rec = self.records.get(step)
        if rec is not None:
            rec["loss"] = next((h["loss"] for h in reversed(log_history)
                                if "loss" in h and h.get("step", step) <= step), None)
        if self.path is not None:
            write_json(self.path, {str(k): v for k, v in sorted(self.records.items())}, indent=1)

    def callback(self) -> Any:
        """A transformers ``TrainerCallback`` driving this recorder (after ``DefaultFlowCallback``, so it has the last
        word on ``control.should_save``)."""
        from transformers import TrainerCallback

        rec = self

        class SaveAtStepsCallback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                args.save_total_limit = None  # keep every checkpoint (the profiles rotate to the last one)
                rec.begin(state.global_step, state.max_steps)

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                control.should_save = rec.step_end(state.global_step, state.num_input_tokens_seen)

            def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                rec.saved(state.global_step, state.log_history)

        return SaveAtStepsCallback()


# --- results: JSON and figure -----------------------------------------------------------------------------------


def summarize_point(entries: Sequence[Any], rows: list[dict[str, Any]], settings: list[str]) -> dict[str, Any]:
    """Paper scoring of one point: per setting and pooled over the settings (n, correct, acc, Wilson 95%)."""
    from ..harness.evaluate import score_rows, summarize, validate_rows

    scored = score_rows(list(entries), validate_rows(rows, list(entries)), settings, "paper")
    per_setting = summarize(scored)
    overall = summarize([{**r, "setting": "all"} for r in scored])["all"]
    return {"n": overall["n"], "overall": overall, "settings": {s: per_setting[s] for s in settings}}


def plot_curve(result: Mapping[str, Any], path: str | Path) -> Path:
    """Tool Acc and Param Acc against rows seen: one line per setting and one pooled over them (dashed), each with
    its Wilson 95% band."""
    from ..core.figures import save_figure  # first: it selects the headless backend

    import matplotlib.pyplot as plt

    points = result.get("points", [])
    settings = result.get("config", {}).get("settings", [])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, title in ((axes[0], "tool", "Tool Acc"), (axes[1], "param", "Param Acc")):
        for name in [*settings, "all"]:
            summaries = [(p["rows"], p["overall"] if name == "all" else p["settings"].get(name)) for p in points]
            summaries = [(x, s) for x, s in summaries if s]
            if not summaries:
                continue
            xs = [x for x, _ in summaries]
            ys = [100 * s[f"{key}_acc"] for _, s in summaries]
            lo = [100 * s[f"{key}_ci95"][0] for _, s in summaries]
            hi = [100 * s[f"{key}_ci95"][1] for _, s in summaries]
            style = dict(color="black", linestyle="--") if name == "all" else {}
            (line,) = ax.plot(xs, ys, marker="o", label=name if name != "all" else "all settings", **style)
            ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.15 if name == "all" else 0.08)
        ax.set_title(f"{title} (95% Wilson bands)")
        ax.set_xlabel("training rows seen")
        ax.set_ylim(-2, 102)
        ax.grid(alpha=0.3)
        if points:
            ax.set_xticks([p["rows"] for p in points])
    axes[0].set_ylabel("% of entries")
    axes[1].legend(fontsize=8, loc="best")
    cfg = result.get("config", {})
    fig.suptitle(f"Learning curve: {cfg.get('model')} SFT ({cfg.get('profile')} profile), "
                 f"{len(result.get('entry_ids', []))} held-out entries x {len(settings)} settings, {cfg.get('mode')}")
    return save_figure(fig, path)


def _write(out: Path, result: dict[str, Any]) -> None:
    write_json(out / RESULT_FILE, result, indent=1)
    if result["points"]:
        plot_curve(result, out / FIGURE_FILE)


# --- the run ----------------------------------------------------------------------------------------------------


def run_learning_curve(
    data: str | Path,
    test: str | Path,
    out: str | Path,
    *,
    profile: Any,
    model: str | None = None,
    sizes: Sequence[int] = DEFAULT_SIZES,
    settings: str | Sequence[str] = "all",
    limit: int | None = None,
    mode: str = "rank",
    max_prompt_tokens: int | None = None,
    context: str | None = None,
    seed: int = 0,
    dtype: str | None = "auto",
    backend: str = "auto",
    resume: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """One SFT run on ``max(sizes)`` rows of ``data`` with a checkpoint after each size, then every checkpoint (and
    the base model, N = 0) predicted on the same ``limit`` entries per setting of ``test`` and scored (paper).

    ``profile``: a training profile (name, YAML path or :class:`~petool_lib.training.Profile`); its SFT stage
    config is used with ``max_examples=max(sizes)`` and one epoch, and its ``eval_max_value_chars`` bounds the
    decoded values. ``model``: default the profile's. ``max_prompt_tokens``: default the profile's
    ``eval_max_prompt_tokens`` (else the model's window minus the generation reserve); ``context``: the
    profile's ``eval_context``. Returns what
    ``<out>/learning_curve.json`` holds: ``config``, ``entry_ids``, ``training`` and ``points`` (N = 0 first).
    """
    from ..training import Profile, load_training_profile, stage_config, to_dict

    prof = profile if isinstance(profile, Profile) else load_training_profile(profile)
    model = model or prof.default_model
    cfg = stage_config(prof, "sft", max_examples=max(parse_sizes(sizes)), epochs=1.0)
    if cfg.max_steps is not None:  # a step cap would cut the run short of the largest size
        from dataclasses import replace

        cfg = replace(cfg, max_steps=None)
    rows_per_step = cfg.effective_batch
    plan = plan_steps(sizes, rows_per_step)  # rows -> step; raises before anything loads
    setting_list = resolve_settings(settings) if isinstance(settings, str) else [normalize_setting(s) for s in settings]
    entries = select_subset(load_test_set(test), limit, seed)
    if not entries:
        raise DataError(f"{test}: no test entries")

    from ..inference.config import CONTEXTS, MODES, DecodeConfig, EvalConfig, profile_eval_config

    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    profile_eval = profile_eval_config(prof.source or prof.name)
    context = context or profile_eval.context
    if context not in CONTEXTS:
        raise ValueError(f"unknown context mode {context!r}; expected one of {CONTEXTS}")
    if context != cfg.context:  # the model would be scored on prompts built otherwise than the ones it trained on
        print(f"warning: evaluating with context {context!r} but the SFT rows were fitted with {cfg.context!r} "
              f"(set eval_context in the profile, or --context {cfg.context})", file=sys.stderr)
    decode = DecodeConfig(max_value_chars=profile_eval.decode.max_value_chars)
    eval_cfg = EvalConfig(modes=(mode,), decode=decode, context=context, dtype=dtype,
                          max_prompt_tokens=max_prompt_tokens if max_prompt_tokens is not None
                          else profile_eval.max_prompt_tokens)
    budget = eval_cfg.max_prompt_tokens  # None: the model's window minus the reserve, known once a model loads

    out = Path(out)
    train_dir = out / TRAIN_DIR
    ckpt_dir = train_dir / "checkpoints"
    result: dict[str, Any] = {
        "config": {
            "data": str(data), "test": str(test), "out": str(out), "profile": prof.name, "profile_source": prof.source,
            "model": model, "backend": backend, "sizes": sorted(plan), "rows_per_step": rows_per_step,
            "checkpoint_steps": {str(n): s for n, s in sorted(plan.items())}, "settings": setting_list,
            "limit": limit, "seed": seed, "mode": mode, "max_prompt_tokens": budget, "context": context,
            "train_context": cfg.context,
            "dtype": dtype, "decode": asdict(decode), "scoring": "paper", "sft_stage_config": to_dict(cfg),
            "note": "one SFT run; the learning-rate schedule spans max(sizes) rows, so smaller sizes are "
                    "mid-schedule checkpoints",
        },
        "entry_ids": [e.entry_id for e in entries],
        "training": None,
        "points": [],
        "complete": False,
    }
    out.mkdir(parents=True, exist_ok=True)
    _write(out, result)

    # 1. one SFT run, a checkpoint at every size
    from ..training import train_sft

    recorder = StepRecorder({s: n for n, s in plan.items()}, ckpt_dir / STEPS_FILE)
    t0 = time.perf_counter()
    res = train_sft(data, cfg, profile=prof, model=model, out=train_dir, backend=backend, seed=seed, resume=resume,
                    callbacks=[recorder.callback()], keep_checkpoints=True)
    metrics = res.metrics
    result["config"]["backend"] = res.run_config.get("backend", backend)  # resolved: hf | unsloth
    res.model = None  # free the trained model before the predictors load
    del res
    from ..training import free_memory

    free_memory()
    missing = [f"checkpoint-{s} ({n} rows)" for n, s in sorted(plan.items())
               if not (ckpt_dir / f"checkpoint-{s}" / "adapter_config.json").is_file()]
    if missing:
        raise RuntimeError(f"{ckpt_dir}: no {', '.join(missing)}; a resumed run was trained with other sizes "
                           "(pass resume=False / --no-resume)")
    result["training"] = {
        "adapter": str(train_dir), "checkpoints": str(ckpt_dir), "seconds": round(time.perf_counter() - t0, 2),
        **{k: metrics.get(k) for k in ("steps", "max_steps", "examples", "first_loss", "final_loss", "train_seconds",
                                       "tokens_per_s", "peak_rss_mb", "peak_cuda_mb", "resumed_from")},
        "data": metrics.get("data"),
    }
    _write(out, result)

    # 2. every point predicted and scored on the same entries
    from ..inference import HFPredictor, predict, write_rows
    from ..inference.predictions import default_cache_path

    records = recorder.records
    points = [(0, 0)] + sorted(plan.items())
    for n, step in tqdm(points, desc="learning-curve points", disable=not progress):
        adapter = None if n == 0 else ckpt_dir / f"checkpoint-{step}"
        predictor = HFPredictor(model, adapter=str(adapter) if adapter else None, dtype=dtype)
        if budget is None:
            budget = result["config"]["max_prompt_tokens"] = eval_cfg.prompt_budget(predictor.context_window())
        rows_path = out / "predictions" / f"rows-{n}.jsonl"
        t_pred = time.perf_counter()
        rows = predict(entries, predictor, setting_list, mode, decode, budget, cache=default_cache_path(rows_path),
                       progress=progress, desc=f"N={n} {mode}", context=context)
        predict_seconds = round(time.perf_counter() - t_pred, 2)
        del predictor
        free_memory()
        write_rows(rows, rows_path)
        rec = records.get(step, {}) if n else {"train_seconds": 0.0, "input_tokens": 0, "tokens_per_s": None,
                                               "loss": None}
        result["points"].append({
            "rows": n, "step": step, "adapter": str(adapter) if adapter else None,
            "train_seconds": rec.get("train_seconds"), "input_tokens": rec.get("input_tokens"),
            "tokens_per_s": rec.get("tokens_per_s"), "loss": rec.get("loss"),
            **summarize_point(entries, rows, setting_list),
            "predict_seconds": predict_seconds, "predictions": str(rows_path),
        })
        _write(out, result)
    result["complete"] = True
    _write(out, result)
    return result


# --- CLI --------------------------------------------------------------------------------------------------------


def format_points(result: Mapping[str, Any]) -> str:
    """A fixed-width table: rows seen, pooled Tool / Param Acc with their intervals, time and tokens/s."""
    from ..harness.evaluate import ci_text

    head = f"{'rows':>6}{'step':>6}{'n':>6}{'Tool Acc':>10}{'(95% CI)':>15}{'Param Acc':>11}{'(95% CI)':>15}" \
           f"{'train s':>9}{'tok/s':>8}"
    lines = [head, "-" * len(head)]
    for p in result["points"]:
        o = p["overall"]
        ci = {k: ci_text(o, k) for k in ("tool", "param")}
        secs = "" if p.get("train_seconds") is None else f"{p['train_seconds']:.0f}"
        tps = "" if p.get("tokens_per_s") is None else f"{p['tokens_per_s']:.0f}"
        lines.append(f"{p['rows']:>6}{p['step']:>6}{o['n']:>6}{100 * o['tool_acc']:>9.1f}%{ci['tool']:>15}"
                     f"{100 * o['param_acc']:>10.1f}%{ci['param']:>15}{secs:>9}{tps:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m petool_lib learning-curve", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="run data dir with sft.jsonl (notebook 02 / synthesize)")
    p.add_argument("--test", default=None, help="held-out synthesized test file (default: DATA/test.json)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--profile", default="cpu", help="training profile: tiny | cpu | paper | PATH.yaml")
    p.add_argument("--model", default=None, help="smollm2 | tiny | HF id or path (default: the profile's)")
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="training rows at which to measure, comma list (multiples of batch_size x grad_accum)")
    p.add_argument("--setting", default="all", help="all | preferred | ratings | chronological, or a comma list")
    p.add_argument("--limit", type=int, default=20, help="test entries per setting (seeded subset; 0 = all)")
    p.add_argument("--mode", default="rank", choices=("generate", "constrained", "rank"))
    p.add_argument("--max-prompt-tokens", type=int, default=None,
                   help="prompt budget (default: the profile's eval_max_prompt_tokens)")
    p.add_argument("--context", default=None, choices=CONTEXT_MODES,
                   help="how prompts are fitted at evaluation (default: the profile's eval_context)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training run and of the test subset")
    p.add_argument("--dtype", default="auto", help="inference weights dtype: auto | float32 | bfloat16")
    p.add_argument("--backend", default="auto", choices=("auto", "hf", "unsloth"), help="training backend")
    p.add_argument("--no-resume", action="store_true", help="train from scratch even if OUT/sft has checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)

    from ..training import BackendError, ProfileError, prepare_backend

    try:
        backend = prepare_backend(args.backend)  # Unsloth is imported before anything imports transformers
        result = run_learning_curve(
            args.data, args.test or Path(args.data) / "test.json", args.out, profile=args.profile, model=args.model,
            sizes=parse_sizes(args.sizes), settings=args.setting, limit=args.limit or None, mode=args.mode,
            max_prompt_tokens=args.max_prompt_tokens, context=args.context, seed=args.seed, dtype=args.dtype,
            backend=backend, resume=not args.no_resume, progress=not args.quiet)
    except (DataError, FileNotFoundError, ValueError, ProfileError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_points(result))
    out = Path(args.out)
    print(f"wrote {out / RESULT_FILE} and {out / FIGURE_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
