"""Benchmark: this predictor (each mode) against a reference-style evaluation loop, same model, same machine, one run.

The reference-style loop mirrors the authors' ``run_experiment.py``: one prompt at a time, the chat-templated text
tokenized with right-side truncation at 4,000 tokens (which can cut the query), ``generate`` with sampling at
temperature 0.1 and up to 256 new tokens, the response being the decoded output after the decoded prompt.

CLI (``python -m petool_lib.benchmarks.predict`` runs the same)::

    python -m petool_lib bench --out outputs/bench.json [--n 30] [--model smollm2]
        [--modes generate,constrained,constrained_xgrammar,rank] [--dtype auto] [--ref-dtype float32]
        [--no-same-dtype-reference]

Phases: each predictor mode with the built-in grammar, plus ``constrained_xgrammar`` and ``rank_xgrammar`` (the same
modes with the call grammar compiled by xgrammar, ``DecodeConfig.grammar = "xgrammar"``; run when xgrammar is
installed, as it is by requirements.txt).

Precision: the predictor runs in ``--dtype`` (``auto``: bf16 on a CPU with native bf16, else fp32; see
:func:`~petool_lib.core.models.inference_dtype`). The reference loop runs in ``--ref-dtype`` (default float32, the dtype a
plain ``from_pretrained`` gives for the fp32 SmolLM2 checkpoint), and, when the two differ, a second time in the
predictor's dtype (phase ``reference_<dtype>``), so the gain from the precision alone is visible.

Beside the phases, ``whole_test_set``: the throughput of ``make eval-full``'s run (all 1,000 official entries x 3
settings, read from its metrics file when present) and its speed-up against this run's reference loop.

Per phase: samples/s, wall time, peak RSS (sampled every 20 ms), Tool/Param Acc (paper and robust scoring), error
taxonomy. ``speedup`` = samples/s relative to the reference loop; ``speedup_same_dtype`` relative to the reference
loop in the predictor's dtype; ``speedup_readable`` = the reference loop's summed latency on the prompts this phase
could read (not failed, e.g. beyond the context window) over this phase's whole wall time, i.e. without the free
failed rows. ``bench.json`` and the PNG are rewritten after every phase, so a long run leaves partial results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import threading
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import psutil
import torch
from tqdm.auto import tqdm

from ..core.context import end_of_turn_ids, make_messages
from ..core.data import SETTINGS, Entry, load_test_set, select_subset
from ..core.models import cpu_has_native_bf16
from ..harness.evaluate import score_rows
from ..inference import MODES, DecodeConfig, HFPredictor, predict, write_rows


class PeakRSS:
    """Context manager sampling this process's resident set size; ``peak`` in bytes."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


XGRAMMAR_PHASES = {"constrained_xgrammar": "constrained", "rank_xgrammar": "rank"}


def default_phases() -> list[str]:
    """Every mode (built-in grammar), each followed by its xgrammar phase when xgrammar can be imported."""
    import importlib.util

    out = list(MODES)
    if importlib.util.find_spec("xgrammar") is not None:
        for phase, mode in XGRAMMAR_PHASES.items():
            out.insert(out.index(mode) + 1, phase)
    return out


def phase_mode(phase: str, cfg: DecodeConfig) -> tuple[str, DecodeConfig]:
    """A phase name -> (predictor mode, decoding config)."""
    if phase in XGRAMMAR_PHASES:
        return XGRAMMAR_PHASES[phase], replace(cfg, grammar="xgrammar")
    if phase not in MODES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {MODES + tuple(XGRAMMAR_PHASES)}")
    return phase, replace(cfg, grammar="builtin")


def bench_items(entries: Sequence[Entry], n: int, seed: int = 0) -> list[tuple[str, Entry]]:
    """``n`` fixed prompts: a seeded subset of ceil(n/3) entries, in every setting, cut to ``n``."""
    chosen = select_subset(entries, math.ceil(n / len(SETTINGS)), seed)
    return [(s, e) for s in SETTINGS for e in chosen][:n]


def reference_loop(
    predictor: HFPredictor, items: Sequence[tuple[str, Entry]], max_length: int = 4000, max_new_tokens: int = 256,
    temperature: float = 0.1, seed: int = 0, progress: bool = True,
) -> list[dict[str, Any]]:
    """The reference evaluation's loop: one prompt at a time, right truncation, sampled ``generate``."""
    model, tok = predictor.model, predictor.tokenizer
    torch.manual_seed(seed)
    rows = []
    for s, e in tqdm(items, desc="reference loop", disable=not progress):
        t0 = time.perf_counter()
        prompt = tok.apply_chat_template(make_messages(e.prompt(s), e.query), tokenize=False,
                                         add_generation_prompt=True)
        inputs = tok(prompt, truncation=True, max_length=max_length, return_tensors="pt").to(predictor.device)
        truncated_text = tok.decode(inputs["input_ids"][0], skip_special_tokens=True)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                                 eos_token_id=end_of_turn_ids(tok), pad_token_id=predictor.pad_id)
        response = tok.decode(out[0], skip_special_tokens=True)[len(truncated_text):]
        rows.append({"entry_id": e.entry_id, "setting": s, "response": response, "mode": "reference",
                     "latency_s": round(time.perf_counter() - t0, 4), "prompt_tokens": int(inputs["input_ids"].shape[1]),
                     "truncated": bool(len(tok(prompt)["input_ids"]) > max_length),
                     "new_tokens": int(out.shape[1] - inputs["input_ids"].shape[1])})
    return rows


def _scores(rows: list[dict[str, Any]], items: Sequence[tuple[str, Entry]]) -> dict[str, Any]:
    """Tool/Param Acc and error counts over exactly the benchmark's (setting, entry) pairs (missing = wrong)."""
    entries = list({e.entry_id: e for _, e in items}.values())
    settings = sorted({s for s, _ in items}, key=SETTINGS.index)
    want = {(s, e.entry_id) for s, e in items}
    out: dict[str, Any] = {}
    for scoring in ("paper", "robust"):
        scored = [r for r in score_rows(entries, rows, settings, scoring) if (r["setting"], r["entry_id"]) in want]
        n = len(scored)
        out[scoring] = {
            "n": n, "tool_acc": sum(r["tool_correct"] for r in scored) / n if n else 0.0,
            "param_acc": sum(r["param_correct"] for r in scored) / n if n else 0.0,
            "errors": dict(Counter(r["error"] for r in scored)),
        }
    return out


def run_phase(fn: Callable[[], list[dict[str, Any]]], items: Sequence[tuple[str, Entry]]
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        rows = fn()
        wall = time.perf_counter() - t0
    res = {"n": len(rows), "wall_s": round(wall, 2), "samples_per_s": round(len(rows) / wall, 4) if wall else None,
           "peak_rss_mb": round(mem.peak / 2**20, 1),
           "mean_prompt_tokens": round(sum(r.get("prompt_tokens") or 0 for r in rows) / max(1, len(rows)), 1),
           "failed": sum(1 for r in rows if r.get("error")),  # e.g. prompts beyond the context window (scored wrong)
           **_scores(rows, items)}
    return res, rows


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = list(result["phases"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    sps = [result["phases"][p]["samples_per_s"] or 0 for p in phases]
    colors = ["#999999" if p == "reference" else "#2a7ab9" for p in phases]
    axes[0].bar(phases, sps, color=colors)
    axes[0].tick_params(axis="x", labelrotation=20, labelsize=8)
    axes[0].set_title("samples / s (higher is better)")
    for i, p in enumerate(phases):
        sp = result.get("speedup", {}).get(p)
        same = result.get("speedup_same_dtype", {}).get(p)
        if sp:
            label = f"{sp:.1f}x" + (f"\n({same:.1f}x same dtype)" if same and same != sp else "")
            axes[0].text(i, sps[i], label, ha="center", va="bottom", fontsize=8)
    width = 0.38
    xs = range(len(phases))
    for ax, scoring in ((axes[1], "paper"), (axes[2], "robust")):
        ta = [100 * result["phases"][p][scoring]["tool_acc"] for p in phases]
        pa = [100 * result["phases"][p][scoring]["param_acc"] for p in phases]
        ax.bar([x - width / 2 for x in xs], ta, width, label="Tool Acc")
        ax.bar([x + width / 2 for x in xs], pa, width, label="Param Acc")
        ax.set_xticks(list(xs), phases, rotation=20, fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(f"accuracy % ({scoring} scoring)")
        ax.legend(fontsize=8)
    cfg = result["config"]
    fig.suptitle(f"{cfg['model']}: {cfg['n']} official prompts, {result['machine']['cpus']} CPU threads, predictor "
                 f"{cfg['dtype']}, reference {cfg['reference'].get('dtype', cfg['dtype'])}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _readable_speedup(ref_rows: list[dict[str, Any]], rows: list[dict[str, Any]], wall: float) -> float | None:
    """The reference's summed latency on the prompts this phase could read, over this phase's whole wall time."""
    readable = {(r["entry_id"], r["setting"]) for r in rows if not r.get("error")}
    ref = sum(r["latency_s"] for r in ref_rows if (r["entry_id"], r["setting"]) in readable)
    return round(ref / wall, 2) if wall and readable else None


def speedups(result: dict[str, Any], rows: dict[str, list[dict[str, Any]]], same_ref: str) -> None:
    """Fill ``speedup`` (vs ``reference``), ``speedup_same_dtype`` (vs ``same_ref``) and their ``_readable`` forms."""
    phases = result["phases"]
    for key, ref_name in (("speedup", "reference"), ("speedup_same_dtype", same_ref)):
        ref = phases.get(ref_name)
        if not ref or not ref["samples_per_s"]:
            continue
        result[key] = {p: round(v["samples_per_s"] / ref["samples_per_s"], 2)
                       for p, v in phases.items() if v["samples_per_s"]}
        result[key + "_readable"] = {p: _readable_speedup(rows[ref_name], rows[p], v["wall_s"])
                                     for p, v in phases.items() if p in rows and not p.startswith("reference")}


WHOLE_TEST_SET = "outputs/eval-full/smollm2.metrics.json"  # what `make eval-full` writes for the base model


def whole_test_set(path: str | os.PathLike[str] | None, reference_sps: float | None) -> dict[str, Any] | None:
    """The throughput of a whole-test-set run (``make eval-full``'s metrics file) beside this benchmark's reference
    loop: samples/s over all its prompts, the speed-up against the reference loop's samples/s, its config and Tool
    Acc per setting. None when the file does not exist (the run is optional)."""
    if not path or not Path(path).is_file():
        return None
    m = json.loads(Path(path).read_text())
    speed = m.get("speed") or {}
    n, secs = speed.get("n"), speed.get("seconds")
    sps = round(n / secs, 4) if n and secs else None
    paper = (m.get("evaluation") or {}).get("paper") or {}
    return {"source": str(path), "n": n, "seconds": secs, "samples_per_s": sps,
            "speedup": round(sps / reference_sps, 2) if sps and reference_sps else None,
            "model": m.get("model"), "adapter": m.get("adapter"), "config": m.get("config"),
            "tool_acc": {s: v.get("tool_acc") for s, v in paper.items() if isinstance(v, dict)}}


def run_bench(
    out: str | os.PathLike[str], n: int = 30, model: str = "smollm2", modes: Sequence[str] | None = None,
    max_prompt_tokens: int = 1536, test: str | None = None, seed: int = 0, reference: bool = True,
    ref_max_new_tokens: int = 256, ref_max_length: int = 4000, dtype: str | None = "auto", progress: bool = True,
    cfg: DecodeConfig | None = None, ref_dtype: str | None = "float32", same_dtype_reference: bool = True,
    whole: str | os.PathLike[str] | None = WHOLE_TEST_SET,
) -> dict[str, Any]:
    out = Path(out)
    png = out.with_suffix(".png")
    rows_dir = out.parent / f"{out.stem}_rows"
    entries = load_test_set(test)
    modes = list(modes) if modes is not None else default_phases()
    for m in modes:
        phase_mode(m, DecodeConfig())  # an unknown phase fails before the model loads
    items = bench_items(entries, n, seed)
    chosen = list({e.entry_id: e for _, e in items}.values())
    predictor = HFPredictor(model, dtype=dtype)
    ref_dtype = ref_dtype or predictor.dtype
    cfg = cfg or DecodeConfig()
    same_ref = "reference" if ref_dtype == predictor.dtype else f"reference_{predictor.dtype}"
    result: dict[str, Any] = {
        "config": {"model": model, "n": len(items), "seed": seed, "modes": list(modes),
                   "max_prompt_tokens": max_prompt_tokens, "decode": cfg.__dict__, "dtype": predictor.dtype,
                   "reference": {"max_length": ref_max_length, "max_new_tokens": ref_max_new_tokens,
                                 "temperature": 0.1, "do_sample": True, "truncation": "right", "dtype": ref_dtype},
                   "entry_ids": [e.entry_id for e in chosen]},
        "machine": {"cpus": torch.get_num_threads(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
                    "torch": torch.__version__, "device": str(predictor.device),
                    "cpu_native_bf16": cpu_has_native_bf16()},
        "phases": {}, "speedup": {},
    }
    all_rows: dict[str, list[dict[str, Any]]] = {}

    def save() -> None:
        speedups(result, all_rows, same_ref)
        ref = result["phases"].get("reference", {}).get("samples_per_s")
        result["whole_test_set"] = whole_test_set(whole, ref)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        plot(result, png)

    by_setting: dict[str, list[Entry]] = {}
    for s, e in items:
        by_setting.setdefault(s, []).append(e)

    def ours(phase: str) -> list[dict[str, Any]]:
        mode, decode = phase_mode(phase, cfg)
        rows: list[dict[str, Any]] = []
        for s, es in by_setting.items():
            rows += predict(es, predictor, [s], mode, decode, max_prompt_tokens, cache=None, progress=progress,
                            desc=f"{phase} {s}")
        return rows

    def ref_loop(b: HFPredictor) -> list[dict[str, Any]]:
        return reference_loop(b, items, ref_max_length, ref_max_new_tokens, seed=seed, progress=progress)

    def ref_predictor() -> HFPredictor:
        nonlocal predictor
        if predictor.dtype != ref_dtype:
            predictor = HFPredictor(model, dtype=ref_dtype)  # the copy in the predictor's dtype is no longer needed
        return predictor

    phases: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [(m, (lambda m=m: ours(m))) for m in modes]
    if reference and same_ref != "reference" and same_dtype_reference:
        phases.append((same_ref, lambda: ref_loop(predictor)))
    if reference:
        phases.append(("reference", lambda: ref_loop(ref_predictor())))
    for name, fn in phases:
        res, rows = run_phase(fn, items)
        result["phases"][name] = res
        all_rows[name] = rows
        write_rows(rows, rows_dir / f"{name}.jsonl")
        save()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m petool_lib bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/bench.json")
    ap.add_argument("--n", type=int, default=30, help="number of fixed official prompts")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--modes", default=None, help="comma list of phases to time: predictor modes (built-in grammar) "
                    f"and {', '.join(XGRAMMAR_PHASES)} (default: all of them; the xgrammar ones when it is installed)")
    ap.add_argument("--max-prompt-tokens", type=int, default=1536,
                    help="predictor prompt budget (evidence context; the cpu profile's until 2026-12-06)")
    ap.add_argument("--max-value-chars", type=int, default=48,
                    help="constrained/rank: longest string value (configs/cpu.yaml; every ground-truth value fits "
                         "48 characters in 93.6%% of the official entries, 64 in 98.6%%)")
    ap.add_argument("--test", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="auto", help="predictor weights dtype (auto: bf16 on CPUs with native bf16)")
    ap.add_argument("--ref-dtype", default="float32", help="reference loop weights dtype")
    ap.add_argument("--no-same-dtype-reference", action="store_true",
                    help="skip the second reference loop in the predictor's dtype")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference-style loop")
    ap.add_argument("--ref-max-new-tokens", type=int, default=256)
    ap.add_argument("--ref-max-length", type=int, default=4000)
    ap.add_argument("--whole-test-set", default=WHOLE_TEST_SET,
                    help="a `make eval-full` metrics file whose throughput is set beside the reference loop ('' = none)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()] if args.modes else default_phases()
    for m in modes:
        try:
            phase_mode(m, DecodeConfig())
        except ValueError as exc:
            ap.error(str(exc))
    res = run_bench(args.out, args.n, args.model, modes, args.max_prompt_tokens, args.test, args.seed,
                    not args.no_reference, args.ref_max_new_tokens, args.ref_max_length, args.dtype, not args.quiet,
                    cfg=DecodeConfig(max_value_chars=args.max_value_chars), ref_dtype=args.ref_dtype,
                    same_dtype_reference=not args.no_same_dtype_reference, whole=args.whole_test_set or None)
    nan = float("nan")
    for name, v in res["phases"].items():
        print(f"{name:<18} {v['samples_per_s']:.3f} samples/s  speedup {res['speedup'].get(name, nan):.2f}x "
              f"(same dtype {res.get('speedup_same_dtype', {}).get(name, nan):.2f}x, readable prompts only "
              f"{res.get('speedup_readable', {}).get(name) or nan:.2f}x)  peak RSS {v['peak_rss_mb']:.0f} MB  "
              f"Tool {100 * v['paper']['tool_acc']:.1f}%  Param {100 * v['paper']['param_acc']:.1f}% (paper)")
    w = res.get("whole_test_set")
    if w:
        print(f"whole test set     {w['samples_per_s']} samples/s over {w['n']} prompts ({w['source']}), "
              f"speedup {w['speedup'] if w['speedup'] is not None else nan}x against this run's reference loop")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
