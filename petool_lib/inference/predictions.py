"""Predict tool calls for a test set with a :class:`~petool_lib.inference.base.Predictor`: a local HF model
(+ adapter) or an OpenAI-compatible endpoint.

CLI (``python -m petool_lib.inference.predictions`` runs the same)::

    python -m petool_lib predict --test PATH --model MODEL [--adapter DIR] [--predictor hf|openai]
        [--setting all|preferred|ratings|chronological] [--limit N] [--mode generate|constrained|rank]
        [--max-prompt-tokens N] --out P.jsonl

Rows are the harness's prediction format (``entry_id``, ``setting``, ``response``) plus ``mode``, ``backend`` (the
predictor kind, ``hf`` or ``openai``; the field keeps its name for existing files), ``latency_s``,
``prompt_tokens``, ``trimmed`` / ``trimmed_items`` (oldest history items dropped to fit the budget),
``over_budget``, ``error`` and mode-specific extras. ``--limit N`` takes the same seeded subset of N entry ids for
every setting and every model (:func:`petool_lib.core.data.select_subset`). Predictions are cached as they are made
(:mod:`petool_lib.inference.cache`): an interrupted run continues where it stopped, and its final file equals an
uninterrupted run's (apart from wall-clock ``latency_s``).

The CLI checks ``--out`` (and ``--metrics``, the cache) can be written, and in ``constrained`` / ``rank`` mode that
every entry has candidate tools, before loading the model; either failure is a one-line ``error: ...`` naming the
path, or the test file, entry and setting, with exit 2. The output is written atomically under a temp name unique
to the process and the call, so two runs on one ``--out`` never write through each other's temp file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from ..core.data import DataError, Entry, find_test_file, load_test_set, resolve_settings, select_subset
from ..core.io import ensure_writable, write_json, write_jsonl
from .base import Predictor
from .cache import PredictionCache, cache_key, digest
from .config import (CONTEXTS, DEFAULT_CONTEXT, DEVICE_MAPS, GRAMMARS, MODES, RANK_BATCH, RANK_WINDOW,
                     DecodeConfig, EvalConfig, profile_eval_config)
from .openai_client import RESPONSE_FORMATS  # the openai SDK itself is imported only when a predictor is made

PREDICTORS = ("hf", "openai")


def make_predictor(
    kind: str, model: str, adapter: str | None = None, dtype: str | None = "auto", concurrency: int = 4,
    max_retries: int = 3, timeout: float = 60.0, max_tokens: int = 256, tokenizer: str | None = None,
    response_format: str = "none", device_map: str | None = None,
) -> Predictor:
    """``hf``: a local model (:class:`~petool_lib.inference.hf.HFPredictor`); ``openai``: an endpoint
    (:class:`~petool_lib.inference.openai_client.OpenAIPredictor`; ``tokenizer`` names a model whose tokenizer
    measures the prompt budget; ``response_format``: none | json_object | json_schema, the structured output asked
    of the server). ``device_map``: hf only, ``auto`` spreads a large local model over the GPUs (then CPU RAM)."""
    if kind == "hf":
        if response_format != "none":
            raise ValueError("--response-format applies to the openai predictor only")
        from .hf import HFPredictor

        return HFPredictor(model, adapter=adapter, dtype=dtype, device_map=device_map)
    if kind == "openai":
        if adapter:
            raise ValueError("--adapter applies to the hf predictor only")
        if device_map not in (None, "none"):
            raise ValueError("--device-map applies to the hf predictor only")
        from .openai_client import OpenAIPredictor

        tok = None
        if tokenizer:
            from ..core.models import load_tokenizer

            tok = load_tokenizer(tokenizer)
        return OpenAIPredictor(model, concurrency=concurrency, max_retries=max_retries, timeout=timeout,
                               max_tokens=max_tokens, tokenizer=tok, response_format=response_format)
    raise ValueError(f"unknown predictor {kind!r}; expected one of {PREDICTORS}")


def default_cache_path(out: str | os.PathLike[str]) -> Path:
    """``<out dir>/.cache/<out name>.cache.jsonl``."""
    p = Path(out)
    return p.parent / ".cache" / f"{p.stem}.cache.jsonl"


CANDIDATE_MODES = ("constrained", "rank")  # modes that choose among the entry's candidate tools


def require_candidates(entries: Sequence[Entry], settings: Sequence[str], mode: str, source: str = "") -> None:
    """In a mode that chooses among candidates, every entry needs one: raises :class:`DataError` naming the test
    file (``source``), the entry and the setting, the way ``baselines`` does, before any model work."""
    if mode not in CANDIDATE_MODES:
        return
    for s in settings:
        for e in entries:
            if not e.candidates:
                where = f"{source}: entry {e.entry_id} ({s})" if source else f"entry {e.entry_id} ({s})"
                raise DataError(f"{where}: no candidate tools; --mode {mode} chooses among them (generate mode "
                                "scores such an entry as the model answers)")


def predict(
    entries: Sequence[Entry],
    predictor: Predictor,
    settings: Sequence[str] | str = "all",
    mode: str = "constrained",
    cfg: DecodeConfig | None = None,
    max_prompt_tokens: int | None = None,
    batch_size: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    progress: bool = True,
    desc: str | None = None,
    context: str = DEFAULT_CONTEXT,
) -> list[dict[str, Any]]:
    """Predict every (setting, entry); returns rows in canonical order (settings, then test-set order).

    Batches are formed over the whole work list (sorted by prompt length when ``predictor.sort_by_length``), so a
    resumed run recomputes exactly the batches an uninterrupted run would; each finished batch is appended to
    ``cache`` before the next starts.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if mode not in predictor.modes:
        raise ValueError(f"the {predictor.name} predictor supports only mode(s) {predictor.modes}, not {mode!r}")
    cfg = cfg or DecodeConfig()
    settings = resolve_settings(settings) if isinstance(settings, str) else list(settings)
    require_candidates(entries, settings, mode)
    work = [(s, e) for s in settings for e in entries]
    if context not in CONTEXTS:
        raise ValueError(f"unknown context mode {context!r}; expected one of {CONTEXTS}")
    prompts = [predictor.prompt(e, s, max_prompt_tokens, context)
               for s, e in tqdm(work, desc="prompts", disable=not progress or len(work) < 50, leave=False)]
    identity = predictor.identity()
    dkey = predictor.decoding_key(mode, cfg)
    keys = [cache_key(identity, p.digest(), digest(e.candidates) if mode != "generate" else "", mode, dkey)
            for (_, e), p in zip(work, prompts)]
    store = PredictionCache(cache)
    order = list(range(len(work)))
    if predictor.sort_by_length:
        order.sort(key=lambda i: (prompts[i].prompt_tokens or 0, i))
    if batch_size is None:
        batch_size = predictor.default_batch_size(mode)
    size = max(1, batch_size)
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    adapter = predictor.adapter
    bar = tqdm(total=len(work), desc=desc or f"{predictor.model_name} {mode}", disable=not progress)
    for batch in batches:
        todo = [i for i in batch if keys[i] not in store]
        if todo:
            results = predictor.run([(work[i][1], prompts[i]) for i in todo], mode, cfg)
            new = []
            for i, res in zip(todo, results):
                row = {
                    **_row_identity(work[i], prompts[i]), "response": res.get("response") or "", "mode": mode,
                    "backend": identity.get("backend"), "model": predictor.model_name,
                    "adapter": str(adapter) if adapter else None, "latency_s": res.get("latency_s"),
                    "error": res.get("error"),
                }
                row.update({k: v for k, v in res.items() if k not in row and k != "latency_s"})
                new.append((keys[i], row))
            store.put_many(new)
        bar.update(len(batch))
    bar.close()
    # Two work items can send the model the same input (e.g. entries that share query and candidates once their
    # histories are trimmed away): one cached output, but every row keeps its own entry, setting and trimming.
    return [{**store.get(k), **_row_identity(work[i], prompts[i])} for i, k in enumerate(keys)]  # type: ignore[dict-item]


def _row_identity(item: tuple[str, Entry], p: Any) -> dict[str, Any]:
    """The fields a row owns whatever the cache holds: its entry, setting and prompt bookkeeping."""
    s, e = item
    out = {"entry_id": e.entry_id, "setting": s, "prompt_tokens": p.prompt_tokens, "trimmed": p.trimmed,
           "trimmed_items": p.trimmed_items, "over_budget": p.over_budget}
    if "context" in p.extra:  # what the evidence builder kept, dropped and shortened
        out["context"] = p.extra["context"]
    return out


def write_rows(rows: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> Path:
    """Write prediction rows as JSONL, atomically (:func:`petool_lib.core.io.write_jsonl`)."""
    return write_jsonl(out, rows)


def speed_summary(rows: Sequence[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Wall time and per-row statistics of one prediction run (for the notebooks' speed tables).

    ``mean_latency_s`` comes from the rows (measured when each was predicted, so it survives a resumed run);
    ``seconds`` is this call's wall time (near zero when everything came from the cache).
    """
    n = len(rows)

    def mean(key: str) -> float | None:
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return round(sum(vals) / len(vals), 2) if vals else None

    return {
        "n": n, "seconds": round(seconds, 1), "mean_latency_s": mean("latency_s"),
        "mean_prompt_tokens": mean("prompt_tokens"), "mean_new_tokens": mean("new_tokens"),
        "trimmed_share": round(sum(bool(r.get("trimmed")) for r in rows) / n, 3) if n else None,
        "over_budget_share": round(sum(bool(r.get("over_budget")) for r in rows) / n, 3) if n else None,
        "failed": sum(1 for r in rows if r.get("error")),
    }


def predict_sets(
    run_dir: str | os.PathLike[str], label: str, predictor: Predictor, test_sets: dict[str, Sequence[Entry]],
    cfg: EvalConfig, progress: bool = True, settings: Sequence[str] | str = "all", cache_label: str | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Predict every test set in every mode of ``cfg`` (all settings) into
    ``<run>/predictions/<label>_<mode>_<testset>.jsonl``; no scoring here.

    The prompt budget is ``cfg.prompt_budget(predictor.context_window())``; over it, :meth:`Predictor.prompt` fits
    the prompt by the ``cfg.context`` policy. ``settings``: "all" (the three) or a list, e.g. with ``none``. Returns
    ``{(testset, mode): {"rows", "path", "speed"}}``; each run resumes from
    ``<run>/predictions/.cache/<cache_label>_<mode>_<testset>.cache.jsonl`` (``cache_label`` defaults to ``label``).
    An ablation passes its model's label (``smollm2+sft+dpo@no-history`` reads and writes ``smollm2+sft+dpo``'s
    cache), so a prompt it builds token for token like one the model already answered (a preferred-only prompt whose
    fitted history kept no item is the no-history prompt) is not computed twice. Safe because the key is the model
    and adapter identity, the prompt's token ids, the candidates, the mode and the decoding bounds
    (:mod:`petool_lib.inference.cache`), never the label.
    """
    unsupported = [m for m in cfg.modes if m not in predictor.modes]
    if unsupported:
        raise ValueError(f"the {predictor.name} predictor cannot run mode(s) {unsupported} (it supports "
                         f"{predictor.modes}); pass cfg.with_modes(...)")
    budget = cfg.prompt_budget(predictor.context_window())
    pred_dir = Path(run_dir) / "predictions"
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for mode in cfg.modes:
        for testset, entries in test_sets.items():
            path = pred_dir / f"{label}_{mode}_{testset}.jsonl"
            t0 = time.perf_counter()
            cache = default_cache_path(pred_dir / f"{cache_label or label}_{mode}_{testset}.jsonl")
            rows = predict(entries, predictor, settings, mode, cfg.decode, budget, cache=cache,
                           progress=progress, desc=f"{label} {mode} {testset}", context=cfg.context)
            seconds = time.perf_counter() - t0
            write_rows(rows, path)
            out[(testset, mode)] = {"rows": rows, "path": str(path), "speed": speed_summary(rows, seconds)}
    return out


def cli_defaults(kind: str, cuda: bool | None = None, profile: str | None = None) -> EvalConfig:
    """What the ``predict`` command runs with before its flags: with ``profile`` (a name in ``configs/`` or a YAML
    path), that profile's ``eval_*`` settings, on any machine — so an adapter is scored with the context it was
    trained on (``--profile cpu-long``); else, for a local model on a machine without CUDA, the cpu profile's
    evaluation settings (``configs/cpu.yaml``: its mode, budget, context and value bound), so the command a newcomer
    types is the fast one; elsewhere (a GPU, an endpoint) the library defaults (constrained, the model's window)."""
    if profile is not None:
        return profile_eval_config(profile)
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if kind == "hf" and not cuda:
        return profile_eval_config("cpu")
    return EvalConfig()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m petool_lib predict", description=__doc__.split("\n\n")[0])
    ap.add_argument("--test", default=None, help="test file or directory (default: PETOOLBENCH_DIR / ../shared)")
    ap.add_argument("--model", required=True, help="smollm2 | tiny | HF id or path | endpoint model name")
    ap.add_argument("--adapter", default=None, help="PEFT adapter directory applied on the base model (hf)")
    ap.add_argument("--predictor", default=None, choices=PREDICTORS,
                    help="hf: a local transformers model (default); openai: an OpenAI-compatible endpoint")
    ap.add_argument("--backend", dest="backend_alias", default=None, choices=PREDICTORS, help=argparse.SUPPRESS)
    ap.add_argument("--setting", default="all",
                    help="all | preferred | ratings | chronological | none (no-history ablation), or p/r/c/n; comma list")
    ap.add_argument("--limit", type=int, default=None, help="a fixed seeded subset of N entries per setting")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --limit subset")
    ap.add_argument("--profile", default=None,
                    help="take the defaults of --mode, --context, --max-prompt-tokens, --max-value-chars, --dtype, "
                         "--device-map and --grammar from this profile's eval_* keys (a name in configs/, e.g. "
                         "cpu-long, or a YAML path), on any machine; flags given still win")
    ap.add_argument("--mode", default=None, choices=MODES,
                    help="default: the cpu profile's eval_modes on a CPU (configs/cpu.yaml), else constrained")
    ap.add_argument("--out", required=True, help="output JSONL")
    ap.add_argument("--max-prompt-tokens", type=int, default=None,
                    help="prompt budget in tokens (default: the cpu profile's on a CPU; elsewhere the model's "
                         "context window minus the generation bound)")
    ap.add_argument("--context", default=None, choices=CONTEXTS,
                    help="how a prompt over the budget is cut: evidence (default; history items that bear on the "
                         "candidates first, then shorter descriptions) or oldest (drop the oldest items)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help=f"hf: prompts per batch (default: rank {RANK_BATCH} — each prompt prefilled alone, the "
                         f"parameters decoded {RANK_WINDOW} rows at a time —; generate/constrained 1 on CPU, 8 on "
                         "GPU); "
                         "openai: requests per cache flush (default 16)")
    ap.add_argument("--dtype", default=None, help="hf weights dtype: auto (default; bf16 on GPU and on CPUs with "
                    "native bf16, else fp32), float32, bfloat16")
    ap.add_argument("--device-map", default=None, choices=DEVICE_MAPS,
                    help="hf: none (default: the model on one device) or auto (accelerate spreads a large model over "
                         "every GPU, then CPU RAM)")
    ap.add_argument("--max-new-tokens", type=int, default=128, help="generate mode: new-token bound")
    ap.add_argument("--max-value-chars", type=int, default=None,
                    help="constrained/rank: string value bound (default: the cpu profile's on a CPU, else 128)")
    ap.add_argument("--rank-score", default="sum", choices=("sum", "mean"), help="rank: candidate name log-lik.")
    ap.add_argument("--grammar", default=None, choices=GRAMMARS,
                    help="constrained and rank's parameters: who enforces the call grammar, xgrammar (the library; "
                         "default unless the profile's eval_grammar says otherwise) or builtin (our token state "
                         "machine, the same language)")
    ap.add_argument("--concurrency", type=int, default=4, help="openai: parallel requests")
    ap.add_argument("--max-retries", type=int, default=3, help="openai: retries per request")
    ap.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request")
    ap.add_argument("--tokenizer", default=None, help="openai: tokenizer used to measure --max-prompt-tokens")
    ap.add_argument("--response-format", default="none", choices=RESPONSE_FORMATS,
                    help="openai: structured output asked of the server, a call whose tool_name is one of the "
                         "entry's candidates: json_schema (OpenAI's form: vLLM, llama-server, Ollama), "
                         "json_object (with a schema: llama-cpp-python's server), none (default: free text)")
    ap.add_argument("--cache", default=None, help="cache file (default: <out dir>/.cache/<out name>.cache.jsonl)")
    ap.add_argument("--no-cache", action="store_true", help="do not read or write a cache file")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--metrics", default=None,
                    help="also write a JSON of the run: paper and robust summaries with 95%% Wilson intervals, "
                         "speed, the evaluation config, the command and the entry ids")
    args = ap.parse_args(argv)
    if args.backend_alias:
        print("warning: --backend is deprecated; use --predictor", file=sys.stderr)
    kind = args.predictor or args.backend_alias or "hf"
    try:
        base = cli_defaults(kind, profile=args.profile)
        mode = args.mode or base.modes[0]
        cfg = EvalConfig(modes=(mode,), context=args.context or base.context, dtype=args.dtype or base.dtype,
                         device_map=args.device_map or base.device_map,
                         max_prompt_tokens=base.max_prompt_tokens if args.max_prompt_tokens is None else args.max_prompt_tokens,
                         decode=DecodeConfig(max_new_tokens=args.max_new_tokens, rank_score=args.rank_score,
                                             max_value_chars=args.max_value_chars or base.decode.max_value_chars,
                                             grammar=args.grammar or base.decode.grammar))
        cache = None if args.no_cache else (args.cache or default_cache_path(args.out))
        for path, option in ((args.out, "--out"), (args.metrics, "--metrics"), (cache, "--cache")):
            if path:
                ensure_writable(path, option)  # before the model loads, not after the work
        test_path = find_test_file(args.test)
        entries = select_subset(load_test_set(test_path), args.limit, args.seed)
        require_candidates(entries, resolve_settings(args.setting), mode, str(test_path))
        predictor = make_predictor(kind, args.model, args.adapter, cfg.dtype, args.concurrency, args.max_retries,
                                   args.timeout, args.max_new_tokens, args.tokenizer, args.response_format,
                                   cfg.device_map)
        print(f"mode {mode}, context {cfg.context}, prompt budget {cfg.prompt_budget(predictor.context_window())}, "
              f"max value chars {cfg.decode.max_value_chars}"
              + (f", grammar {cfg.decode.grammar}" if mode != "generate" else ""), file=sys.stderr)
        t0 = time.perf_counter()
        rows = predict(entries, predictor, args.setting, mode, cfg.decode, cfg.prompt_budget(predictor.context_window()),
                       args.batch_size, cache, progress=not args.quiet, context=cfg.context)
        seconds = time.perf_counter() - t0
    except (DataError, FileNotFoundError, ValueError) as exc:  # bad input (file, entry, setting named), bad output path
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        write_rows(rows, args.out)
    except OSError as exc:  # checked writable at the start; the location changed or filled up during the run
        kept = f"; the predictions are cached in {cache}, a rerun writes them without predicting" if cache else ""
        print(f"error: cannot write {args.out} ({exc}){kept}", file=sys.stderr)
        return 2
    from ..harness.evaluate import evaluate_rows, format_table

    settings = resolve_settings(args.setting)
    summaries = {sc: evaluate_rows(entries, rows, settings, scoring=sc) for sc in ("paper", "robust")}
    print(format_table(summaries["paper"], f"{args.out} (paper scoring)"))
    if args.metrics:
        write_json(args.metrics, {
            "command": "python -m petool_lib predict " + " ".join(argv if argv is not None else sys.argv[1:]),
            "predictions": str(args.out), "test_set": "official" if args.test is None else str(args.test),
            "n_entries": len(entries), "settings": settings, "model": args.model, "adapter": args.adapter,
            "predictor": predictor.identity(), "config": {"profile": args.profile, "mode": mode,
                                                          "context": cfg.context,
                                                          "max_prompt_tokens": cfg.prompt_budget(predictor.context_window()),
                                                          "dtype": cfg.dtype, "decode": asdict(cfg.decode),
                                                          "response_format": args.response_format},
            "speed": speed_summary(rows, seconds), "evaluation": summaries,
            "entry_ids": [e.entry_id for e in entries],
        }, indent=2)
        print(f"metrics: {args.metrics}")
    failed = sum(1 for r in rows if r.get("error"))
    if failed:
        print(f"{failed} prediction(s) failed (endpoint error, or a prompt beyond the context window): written "
              f"with an empty response and their error, scored as wrong")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
