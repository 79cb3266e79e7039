"""Notebook 05's evaluation steps as library calls: predict, score (paper and robust), record in ``metrics.json``,
print the headline table.

Every function takes the notebook's ``metrics`` dict (its ``evaluation`` / ``evaluation_files`` sections, see
:func:`load_evaluation`), adds to it and writes those two sections back to ``<run>/metrics.json``, so an
interrupted notebook keeps what it finished. Layout: :mod:`petool_lib.reporting.report`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from ..core.data import NO_HISTORY, Entry, load_test_set, resolve_settings, select_subset
from ..core.runs import read_metrics, run_path, update_metrics
from ..harness.baselines import METHODS, predict_baseline
from ..harness.evaluate import evaluate_rows, format_table, load_predictions, write_predictions
from ..harness.probes import rename_test_set
from ..harness.scoring import SCORINGS
from ..harness.seen import seen_apis, seen_unseen_summary
from ..inference.base import Predictor
from ..inference.config import EvalConfig
from ..inference.predictions import predict_sets
from .report import record_evaluation

SECTIONS = ("evaluation", "evaluation_files")
STAGE_ADAPTERS = (("sft", "+sft"), ("dpo", "+sft+dpo"))  # <run>/models/<stage> -> label suffix


def load_evaluation(run: str | Path) -> dict[str, Any]:
    """The run's ``evaluation`` and ``evaluation_files`` sections (empty when absent)."""
    metrics = read_metrics(run)
    return {k: metrics.get(k, {}) for k in SECTIONS}


def save_evaluation(run: str | Path, metrics: dict[str, Any]) -> None:
    for section in SECTIONS:
        update_metrics(run, section, metrics.get(section, {}))


def load_test_sets(run: str | Path, test_path: str | None = None, limit: int | None = None,
                   synth_limit: int | None = None, seed: int = 0) -> dict[str, list[Entry]]:
    """``official`` (a seeded subset of ``limit`` entries; ``None``: all) and, when notebook 02 wrote
    ``<run>/data/test.json``, ``synthesized`` (``synth_limit`` entries)."""
    sets = {"official": select_subset(load_test_set(test_path), limit, seed)}
    synth = run_path(run) / "data" / "test.json"
    if synth.is_file():
        sets["synthesized"] = select_subset(load_test_set(synth), synth_limit, seed)
    return sets


def scoring_test_sets(run: str | Path, test_path: str | None, testsets: Sequence[str], seed: int = 0
                      ) -> dict[str, list[Entry]]:
    """The entries behind each recorded test set name (notebook 06 re-scores the prediction files on them):
    ``official`` (all entries; each file covers its subset), ``synthesized`` (``<run>/data/test.json``) and
    ``<name>-renamed`` (that set with the providers renamed by ``seed``, as notebook 05 evaluated it). An unknown
    name is an error naming it."""
    base: dict[str, list[Entry]] = {}
    out: dict[str, list[Entry]] = {}
    for name in testsets:
        root = name[: -len(RENAMED_SUFFIX)] if name.endswith(RENAMED_SUFFIX) else name
        if root not in base:
            if root == "official":
                base[root] = load_test_set(test_path)
            elif root == "synthesized":
                base[root] = load_test_set(run_path(run) / "data" / "test.json")
            else:
                raise KeyError(f"unknown test set {name!r} in {run}/metrics.json (expected official, synthesized "
                               f"or <one of them>{RENAMED_SUFFIX})")
        out[name] = rename_test_set(base[root], seed) if name != root else base[root]
    return out


def record_scores(metrics: dict[str, Any], testset: str, name: str, entries: Sequence[Entry],
                  rows: list[dict[str, Any]], path: str | Path, scoring: str = "paper",
                  settings: Sequence[str] | None = None) -> None:
    """Score ``rows`` with every scoring (over ``settings``; default the three paper settings, plus ``none`` when
    the rows hold it), record them under ``name``, print the ``scoring`` table."""
    for sc in SCORINGS:
        summary = evaluate_rows(list(entries), rows, list(settings) if settings else None, scoring=sc)
        record_evaluation(metrics, testset, name, sc, summary, str(path))
    print(format_table(metrics["evaluation"][testset][name][scoring], f"{name} on {testset} ({scoring})"))


def evaluate_baselines(metrics: dict[str, Any], run: str | Path, test_sets: dict[str, list[Entry]], seed: int = 0,
                       scoring: str = "paper", methods: Sequence[str] = METHODS) -> None:
    """Each prompt-only baseline on each test set -> ``<run>/predictions/baseline-<method>_<testset>.jsonl``."""
    for testset, entries in test_sets.items():
        for method in methods:
            rows = predict_baseline(entries, method, seed=seed)
            path = write_predictions(run_path(run) / "predictions" / f"baseline-{method}_{testset}.jsonl", rows)
            record_scores(metrics, testset, f"baseline-{method}", entries, rows, path, scoring)
    save_evaluation(run, metrics)


def evaluate_predictor(metrics: dict[str, Any], run: str | Path, label: str, predictor: Predictor,
                       lm_sets: dict[str, list[Entry]], eval_cfg: EvalConfig, scoring: str = "paper",
                       progress: bool = True, settings: Sequence[str] | str = "all",
                       cache_label: str | None = None) -> dict[str, dict[str, Any]]:
    """Predict every test set in every mode of ``eval_cfg`` (:func:`~petool_lib.inference.predict_sets`), score
    and record each as ``"<label> (<mode>)"``; returns the speed summaries keyed ``"<testset>/<label> (<mode>)"``.
    ``cache_label``: whose prediction cache to use (default ``label``; an ablation passes its model's)."""
    speed: dict[str, dict[str, Any]] = {}
    scored = None if settings == "all" else resolve_settings(settings) if isinstance(settings, str) else list(settings)
    for (testset, mode), res in predict_sets(run_path(run), label, predictor, lm_sets, eval_cfg, progress,
                                             settings, cache_label).items():
        name = f"{label} ({mode})"
        record_scores(metrics, testset, name, lm_sets[testset], res["rows"], res["path"], scoring, scored)
        speed[f"{testset}/{name}"] = res["speed"]
    save_evaluation(run, metrics)
    return speed


ABLATIONS: dict[str, str] = {
    "oldest": "the reference context: over budget, drop the oldest history items (all three settings)",
    "none": "no history at all: the preferred-only prompt with an empty history (setting 'none')",
    "renamed": "every provider renamed consistently within each entry, candidates shuffled (harness.probes), "
               "recorded under the test set '<testset>-renamed': a model that reads the history keeps its accuracy",
}
RENAMED_SUFFIX = "-renamed"  # test set name of the provider-renamed copy of a test set


def parse_ablations(ablations: str | Sequence[str] | None) -> list[str]:
    """``"oldest,none"`` -> ``["oldest", "none"]``; empty / None -> ``[]``; an unknown name is an error."""
    items = ablations.split(",") if isinstance(ablations, str) else list(ablations or [])
    out = [a.strip() for a in items if a and a.strip()]
    unknown = [a for a in out if a not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation(s) {unknown}; expected some of {sorted(ABLATIONS)}")
    return out


MODEL_CHOICES: tuple[str, ...] = ("all", "base", "final")
ABLATION_MODELS = MODEL_CHOICES  # the words eval_ablation_models (and eval_models) accept besides labels


def select_models(labels: Sequence[str], which: str | Sequence[str] | None, what: str = "model") -> list[str]:
    """Which of the run's model ``labels`` (base model first, then its adapters) ``which`` names: ``"all"``,
    ``"base"`` (the first label), ``"final"`` (the last one, e.g. SFT+DPO), or a comma list of these words and
    labels, in the order of ``labels``; empty / None = none. An unknown word or label is an error naming it and
    ``what`` the selection is for."""
    items = which.split(",") if isinstance(which, str) else list(which or [])
    wanted: list[str] = []
    for w in (x.strip() for x in items if x and x.strip()):
        if w == "all":
            wanted += list(labels)
        elif w == "base":
            wanted += list(labels[:1])
        elif w == "final":
            wanted += list(labels[-1:])
        elif w in labels:
            wanted.append(w)
        else:
            raise ValueError(f"unknown {what} {w!r}; expected {MODEL_CHOICES} or one of {list(labels)}")
    return [label for label in labels if label in set(wanted)]


def ablation_models(labels: Sequence[str], which: str | Sequence[str] | None) -> list[str]:
    """Which of the run's model ``labels`` get the context ablations (``eval_ablation_models``; see
    :func:`select_models`)."""
    return select_models(labels, which, "ablation model")


def evaluated_models(models: dict[str, str | None], which: str | Sequence[str] | None) -> dict[str, str | None]:
    """The part of :func:`run_adapters`' ``{label: adapter}`` that ``eval_models`` names (``"all"``, ``"base,final"``
    — the base model and the last adapter, skipping the SFT-only one —, labels; see :func:`select_models`). Naming
    none is an error: an evaluation with no model is a configuration mistake, not an empty table. A label left out
    is printed, so a shorter table is never silent."""
    chosen = select_models(list(models), which, "evaluated model (eval_models)")
    if not chosen:
        raise ValueError(f"eval_models={which!r} names none of the run's models {list(models)}")
    for label in models:
        if label not in chosen:
            print(f"{label}: not evaluated (eval_models={which!r})")
    return {label: models[label] for label in chosen}


def evaluate_ablations(metrics: dict[str, Any], run: str | Path, label: str, predictor: Predictor,
                       lm_sets: dict[str, list[Entry]], eval_cfg: EvalConfig, ablations: str | Sequence[str] | None,
                       scoring: str = "paper", progress: bool = True, seed: int = 0) -> dict[str, dict[str, Any]]:
    """The same predictor under the ablations (:data:`ABLATIONS`), recorded as ``"<label>@oldest (<mode>)"`` and
    ``"<label>@no-history (<mode>)"`` beside the main rows, and (``renamed``) as ``"<label> (<mode>)"`` on the test
    set ``"<testset>-renamed"`` (providers renamed with ``seed``); returns their speed summaries."""
    speed: dict[str, dict[str, Any]] = {}
    for a in parse_ablations(ablations):
        if a == "oldest":
            speed |= evaluate_predictor(metrics, run, f"{label}@oldest", predictor, lm_sets,
                                        replace(eval_cfg, context="oldest"), scoring, progress, cache_label=label)
        elif a == "renamed":
            renamed = {f"{ts}{RENAMED_SUFFIX}": rename_test_set(es, seed) for ts, es in lm_sets.items()
                       if not ts.endswith(RENAMED_SUFFIX)}
            speed |= evaluate_predictor(metrics, run, label, predictor, renamed, eval_cfg, scoring, progress)
        else:
            speed |= evaluate_predictor(metrics, run, f"{label}@no-history", predictor, lm_sets, eval_cfg, scoring,
                                        progress, settings=[NO_HISTORY], cache_label=label)
    return speed


def run_adapters(run: str | Path, model: str) -> dict[str, str | None]:
    """``{label: adapter directory}``: the base ``model`` (no adapter), then the SFT and SFT+DPO adapters that
    notebooks 03-04 left in ``<run>/models/`` (a missing one is reported and skipped)."""
    short = Path(str(model)).name
    out: dict[str, str | None] = {short: None}
    for stage, suffix in STAGE_ADAPTERS:
        adapter = run_path(run) / "models" / stage
        if (adapter / "adapter_config.json").is_file():
            out[short + suffix] = str(adapter)
        else:
            print(f"no adapter at {adapter}: {short + suffix} skipped (run notebooks 03-04)")
    return out


def evaluate_seen(metrics: dict[str, Any], run: str | Path, lm_sets: dict[str, list[Entry]],
                  scoring: str = "paper") -> dict[tuple[str, str, str], dict[str, Any]]:
    """Accuracy of every recorded language-model prediction file on seen vs unseen ground-truth APIs
    (:mod:`petool_lib.harness.seen`), keyed ``(testset, name, side)``; written to ``evaluation_seen``."""
    seen, unknown = seen_apis(run)
    for testset, reason in unknown.items():
        print(f"{testset}: seen/unseen split unavailable: {reason}")
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for testset, by_name in metrics.get("evaluation_files", {}).items():
        if testset not in seen or testset not in lm_sets:
            continue
        for name, path in by_name.items():
            if name.startswith("baseline-"):
                continue
            rows = load_predictions(path, lm_sets[testset], subset=True)
            for side, summary in seen_unseen_summary(lm_sets[testset], rows, seen[testset], scoring).items():
                out[(testset, name, side)] = summary
    update_metrics(run, "evaluation_seen", {"/".join(k): v for k, v in out.items()})
    return out
