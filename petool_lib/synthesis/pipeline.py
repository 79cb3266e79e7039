"""Build PEToolBench-style data from a tool corpus: tool understanding -> functional groups -> users' preferences ->
histories -> instructions -> SFT / DPO / test files in the official format (notebooks 01-02).

:func:`prepare` runs steps 1-3 and the per-API part of step 5 (notebook 01) into a :class:`Preparation`;
:func:`synthesize` builds the examples from it and writes every file (notebook 02); the command line is
:mod:`petool_lib.synthesis.cli`.

``cfg.train`` counts examples per setting: every synthesized entry carries all three settings' prompts, as the
official test entries do. Same inputs and seed give byte-identical files (no timestamps or absolute paths inside).
Each step is documented in its module: :mod:`~petool_lib.synthesis.catalog`, :mod:`~petool_lib.synthesis.understanding`,
:mod:`~petool_lib.synthesis.grouping`, :mod:`~petool_lib.synthesis.preferences`, :mod:`~petool_lib.synthesis.histories`,
:mod:`~petool_lib.synthesis.instructions`, :mod:`~petool_lib.synthesis.examples`, :mod:`~petool_lib.synthesis.holdout`,
:mod:`~petool_lib.synthesis.exports`.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..core.io import write_json, write_jsonl
from .catalog import Catalog, load_catalog
from .config import SynthConfig
from .examples import HARD_POOL, Example, Synthesizer
from .exports import (MANIFEST, OutDir, claim_out_dir, dpo_rows, fit_export_prompts, load_tokenizer, remove_stale,
                      row_cases, sft_rows, write_hf, write_llamafactory, written_hashes)
from .grouping import Group, api_text, embed_texts, group_apis, nearest_neighbours, pairwise_agreement, size_distribution
from .histories import measure_structure
from .holdout import OfficialReference, drop_official_queries, leakage_report, load_reference, split_groups
from .instructions import Instruction, build_pools
from .instructions import plan_requests as plan_instruction_requests
from .llm import LLMUnavailable, SynthLLM, make_llm
from .preferences import PreferenceModel
from .understanding import ATTRIBUTES, derived_share, provider_profiles, understand
from .understanding import plan_requests as plan_understanding_requests

TRAIN_ID_OFFSET = 1_000_000


@dataclass
class Preparation:
    """Steps 1-3 and the per-API part of step 5 (notebook 01): everything but the examples and the data files."""

    cfg: SynthConfig
    ref: OfficialReference | None
    ref_reason: str
    catalog: Catalog
    llm: SynthLLM
    plan: dict[str, Any]
    understood: dict[str, Any]
    u_counts: dict[str, int]
    embedding_backend: str
    groups: list[Group]
    agreement: dict[str, float] | None
    neighbours: dict[str, list[str]]
    train_groups: list[Group]
    test_groups: list[Group]
    blocked: list[Group]
    rating_support: dict[str, dict[str, int]]
    pools: dict[str, list[Instruction]]
    i_counts: dict[str, int]
    prefs: PreferenceModel
    synth: Synthesizer
    timings: dict[str, float] = field(default_factory=dict)


def _make_llm(cfg: SynthConfig) -> SynthLLM:
    kw: dict[str, Any] = {"cache_dir": cfg.cache_dir, "progress": cfg.progress}
    if cfg.llm_max_tokens is not None:
        kw["max_tokens"] = cfg.llm_max_tokens
    if cfg.llm == "openai":
        kw["concurrency"] = cfg.concurrency
        kw["allow_fallback"] = cfg.allow_fallback
    return make_llm(cfg.llm, cfg.model, **kw)


def require_replies(cfg: SynthConfig, llm: SynthLLM, step: str) -> None:
    """A run that asked a model LLM and got no reply at all stops here (:class:`LLMUnavailable`), unless
    ``cfg.allow_fallback``: then the manifest's ``llm.fallback`` counts what fell back."""
    st = llm.stats
    if cfg.allow_fallback or not llm.is_model or st.failures == 0 or st.api_calls or st.cache_hits:
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(st.failure_reasons.items()))
    raise LLMUnavailable(f"llm {llm.name}: none of the {st.failures} {step} requests got a reply ({reasons}); "
                         "pass --allow-fallback to use the offline templates instead")


def fallback_summary(prep: "Preparation") -> dict[str, Any]:
    """What fell back to the offline templates and why (the manifest's ``llm.fallback``; 0 items for ``offline``,
    whose templates are the design, not a fallback)."""
    u, i = prep.u_counts, prep.i_counts
    return {"allowed": prep.cfg.allow_fallback,
            "items": u.get("fallback", 0) + i.get("fallback_apis", 0),
            "tool_understanding": u.get("fallback", 0), "instructions": i.get("fallback_apis", 0),
            "failed_requests": dict(sorted(prep.llm.stats.failure_reasons.items())),
            "endpoint_unreachable": getattr(prep.llm, "unreachable", None)}


def _llm_plan(cfg: SynthConfig, llm: SynthLLM, catalog: Catalog) -> dict[str, Any]:
    reqs_u = plan_understanding_requests(catalog.documented, cfg.llm_limit)
    reqs_i = plan_instruction_requests(catalog.apis, cfg.instructions_per_api, cfg.llm_limit)
    pu, pi = llm.plan(reqs_u), llm.plan(reqs_i)
    total = {k: pu[k] + pi[k] for k in pu}
    return {"llm": llm.describe(), "tool_understanding": pu, "instructions": pi, "total": total}


def _load(cfg: SynthConfig) -> tuple[OfficialReference | None, str, Catalog]:
    """The official reference (required for ``tools="official"``) and the tool catalog."""
    ref, ref_reason = load_reference(cfg.test_set, required=cfg.tools == "official")
    catalog = load_catalog(cfg.tools, ref.entries if ref is not None else None)
    return ref, ref_reason, catalog


def plan_llm(cfg: SynthConfig) -> dict[str, Any]:
    """The dry run: how many model calls (not yet cached) and tokens a run would spend; calls nothing."""
    cfg.validate()
    _, _, catalog = _load(cfg)
    return {**_llm_plan(cfg, _make_llm(cfg), catalog), "catalog": catalog.summary()}


def _prefer_full_rating_support(synth: Synthesizer, train_groups: list[Group], test_groups: list[Group]
                                ) -> dict[str, dict[str, int]]:
    """Keep, per split, only the target groups where every user's rated-0 tool can show >= 2 distinct calls (as in
    the official set) when there are any; the others are marked ``<split>-unused``. Returns the counts."""
    support = {}
    for split, tg in (("train", train_groups), ("test", test_groups)):
        full = [g for g in tg if synth.full_rating_support(g, split)]
        support[split] = {"groups": len(tg), "with_full_rating_support": len(full)}
        if full:
            for g in tg:
                if g not in full:
                    g.split = f"{g.split}-unused"
            tg[:] = full
    return support


def prepare(cfg: SynthConfig) -> Preparation:
    """Load the tools and the official reference, understand and group the tools, split the groups under the
    holdout, build the instruction pools and the preference model."""
    cfg.validate()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ref, ref_reason, catalog = _load(cfg)
    if not catalog.documented:
        raise ValueError(f"no valid documented API in {cfg.tools!r} (skipped: {catalog.skip_counts()})")
    llm = _make_llm(cfg)
    plan = _llm_plan(cfg, llm, catalog)
    timings["load"] = time.perf_counter() - t0

    # 1. tool understanding
    t = time.perf_counter()
    understood, u_counts = understand(catalog.documented, llm, cfg.progress, cfg.llm_limit)
    require_replies(cfg, llm, "tool understanding")
    timings["understanding"] = time.perf_counter() - t

    # 2. functional grouping
    t = time.perf_counter()
    docs = catalog.documented
    texts = [api_text(a, understood[a.full_name].functionality if understood[a.full_name].origin == "model" else None)
             for a in docs]
    emb_cache = Path(cfg.cache_dir) / "embeddings" if cfg.cache_dir else Path(llm.cache.root).parent / "embeddings"
    vecs, embedding_backend = embed_texts(texts, cfg.embedding, emb_cache)
    seeds = sorted(ref.groups.items()) if (ref is not None and cfg.tools == "official") else []
    groups = group_apis(docs, vecs, cfg.group_threshold, cfg.max_group_size, seeds=seeds)
    agreement = None
    if ref is not None:
        in_cat = [names for names in ref.groups.values() if all(n in catalog.by_name for n in names)]
        if in_cat:
            unseeded = group_apis(docs, vecs, cfg.group_threshold, cfg.max_group_size)
            agreement = pairwise_agreement([g.members for g in unseeded], in_cat)
    nn_idx = nearest_neighbours(vecs, HARD_POOL * 2)
    neighbours = {docs[i].full_name: [docs[j].full_name for j in row] for i, row in enumerate(nn_idx)}
    train_groups, test_groups, blocked = split_groups(cfg, groups, catalog, ref)
    timings["grouping"] = time.perf_counter() - t

    # 3. preferences; 5. instruction pools (official test queries removed under the strict holdout)
    t = time.perf_counter()
    prefs = PreferenceModel(provider_profiles(docs, understood), cfg.seed, cfg.noise, cfg.concentration)
    pools, i_counts = build_pools(catalog.apis, llm, cfg.seed, cfg.instructions_per_api, cfg.progress, cfg.llm_limit)
    require_replies(cfg, llm, "instruction")
    strict = cfg.holdout == "strict"
    i_counts["removed_official_queries"] = drop_official_queries(pools, ref) if (strict and ref is not None) else 0
    synth = Synthesizer(cfg, catalog, groups, pools, prefs, neighbours, ref)
    support = _prefer_full_rating_support(synth, train_groups, test_groups)
    if cfg.train > 0 and not train_groups:
        raise ValueError("no functional group is available as a training target (all blocked by the holdout?)")
    if cfg.test > 0 and not test_groups:
        raise ValueError("no functional group is available as a test target")
    timings["pools"] = time.perf_counter() - t
    return Preparation(cfg, ref, ref_reason, catalog, llm, plan, understood, u_counts, embedding_backend, groups,
                       agreement, neighbours, train_groups, test_groups, blocked, support, pools, i_counts, prefs,
                       synth, timings)


def write_tool_files(prep: Preparation, out: Path) -> list[Path]:
    """``tools.jsonl`` (docs + understanding + group + instruction pool per API) and ``groups.json``."""
    out.mkdir(parents=True, exist_ok=True)
    group_of = {m: g.gid for g in prep.groups for m in g.members}
    rows = []
    for a in prep.catalog.apis:
        row = a.to_dict()
        if a.full_name in prep.understood:
            row.update(prep.understood[a.full_name].to_dict())
        row["func"] = group_of.get(a.full_name)
        row["instructions"] = [ins.to_dict() for ins in prep.pools.get(a.full_name, [])]
        rows.append(row)
    return [
        write_jsonl(out / "tools.jsonl", rows),
        write_json(out / "groups.json", {
            "threshold": prep.cfg.group_threshold, "embedding_backend": prep.embedding_backend,
            "max_size": prep.cfg.max_group_size, "size_distribution": size_distribution(prep.groups),
            "groups": [g.to_dict() for g in prep.groups]}, indent=1),
    ]


def preparation_summary(prep: Preparation) -> dict[str, Any]:
    """The manifest's view of steps 1-3 (also what notebook 01 shows)."""
    cfg = prep.cfg
    return {
        "inputs": {"tools": cfg.tools, "catalog": prep.catalog.summary(),
                   "official_test_set": prep.ref.summary() if prep.ref is not None else {"found": False, "reason": prep.ref_reason}},
        "skipped_inputs": {"counts": prep.catalog.skip_counts(), "items": [s.to_dict() for s in prep.catalog.skipped[:200]]},
        "llm": {**prep.llm.describe(), "plan": prep.plan, "stats": prep.llm.stats.to_dict(),
                "tool_understanding": prep.u_counts, "instructions": prep.i_counts,
                "fallback": fallback_summary(prep)},
        "understanding": {"attribute_derived_share": derived_share(prep.understood)},
        "grouping": {"groups": len(prep.groups), "size_distribution": size_distribution(prep.groups),
                     "embedding_backend": prep.embedding_backend, "threshold": cfg.group_threshold,
                     "agreement_with_official_groups": prep.agreement,
                     "train_target_groups": len(prep.train_groups), "test_target_groups": len(prep.test_groups),
                     "blocked_groups": len(prep.blocked), "rating_support": prep.rating_support},
    }


def understanding_sample(prep: Preparation, n: int = 8) -> list[dict[str, Any]]:
    """Rows for a table of ``n`` documented APIs spread over the catalog: functionality and attribute scores."""
    docs = prep.catalog.documented
    rows = []
    for a in docs[:: max(1, len(docs) // n)][:n]:
        u = prep.understood[a.full_name]
        rows.append({"api": a.full_name, "functionality": u.functionality, **{k: u.attributes[k]["score"] for k in ATTRIBUTES}})
    return rows


def holdout_split(prep: Preparation) -> dict[str, Any]:
    """How the holdout split the functional groups (notebook 01's table)."""
    return {"train target groups": len(prep.train_groups), "test target groups": len(prep.test_groups),
            "blocked by the holdout": len(prep.blocked), "holdout": prep.cfg.holdout,
            "instructions removed (official test queries)": prep.i_counts.get("removed_official_queries", 0)}


def preparation_metrics(prep: Preparation) -> dict[str, Any]:
    """What notebook 01 records under ``tool_preparation`` in the run's metrics."""
    summary = preparation_summary(prep)
    g = summary["grouping"]
    return {**holdout_split(prep), "groups": g["groups"], "size_distribution": g["size_distribution"],
            "agreement_with_official_groups": g["agreement_with_official_groups"],
            "apis": summary["inputs"]["catalog"]["apis"], "skipped_inputs": summary["skipped_inputs"]["counts"]}


def _targets(groups: list[Group], n: int, rng: random.Random) -> list[Group]:
    """``n`` target groups, cycling through seeded permutations so every group is used about equally."""
    out: list[Group] = []
    while len(out) < n and groups:
        perm = list(groups)
        rng.shuffle(perm)
        out.extend(perm)
    return out[:n]


def _examples(cfg: SynthConfig, prep: Preparation) -> dict[str, list[Example]]:
    """Steps 4-5: ``cfg.test`` test and ``cfg.train`` training examples (target groups cycled per split)."""
    examples: dict[str, list[Example]] = {"test": [], "train": []}
    for split, n, tgroups, offset in (("test", cfg.test, prep.test_groups, 0),
                                      ("train", cfg.train, prep.train_groups, TRAIN_ID_OFFSET)):
        targets = _targets(tgroups, n, random.Random(f"{cfg.seed}:{split}:targets"))
        for i, g in enumerate(tqdm(targets, desc=f"{split} examples", disable=not cfg.progress)):
            examples[split].append(prep.synth.example(split, i, g, offset + i))
    return examples


def _user_rows(examples: dict[str, list[Example]]) -> list[dict[str, Any]]:
    """``users.jsonl``: one row per entry (training first) with the user's latent preferences and choices."""
    return [{**ex.user.to_dict(), "split": split, "entry_id": ex.entry.entry_id, "target_group": ex.entry.func,
             "preferred_provider": ex.user.tool_comb[0], "aligned_provider": ex.aligned_provider,
             "rejected_provider": ex.rejected_provider}
            for split in ("train", "test") for ex in examples[split]]


def write_outputs(out: OutDir, prep: Preparation, examples: dict[str, list[Example]], lf_tokenizer: Any = None
                  ) -> tuple[list[Path], dict[str, Any]]:
    """Step 6: every data file (the previous run's files removed first, nothing else touched); returns the files
    written and the counts the manifest records (``llamafactory``: what fitting the export to its token budget did,
    :func:`~petool_lib.synthesis.exports.fit_export_prompts`, with ``lf_tokenizer``, loaded from ``cfg.lf_tokenizer``
    when not given)."""
    cfg = prep.cfg
    tok = lf_tokenizer
    if tok is None and cfg.lf_tokenizer and cfg.lf_cutoff_len:
        tok = load_tokenizer(cfg.lf_tokenizer)  # before anything is removed
    remove_stale(out)
    root = out.root
    train_entries = [ex.entry for ex in examples["train"]]
    test_entries = [ex.entry for ex in examples["test"]]
    users = _user_rows(examples)
    cases = row_cases(train_entries)  # each prompt parsed once for both stages
    sft = sft_rows(train_entries, cases=cases)
    rej = {ex.entry.entry_id: ex.rejected_call for ex in examples["train"]}
    dpo = dpo_rows(train_entries, rej, cases=cases)
    lf_sft, lf_dpo, lf_stats = fit_export_prompts(sft, dpo, tok, cfg.lf_cutoff_len, cfg.lf_tokenizer)
    written = [*write_tool_files(prep, root),
               write_jsonl(root / "users.jsonl", users),
               write_json(root / "test.json", [e.to_dict() for e in test_entries]),
               write_jsonl(root / "sft.jsonl", sft),
               write_jsonl(root / "dpo.jsonl", dpo),
               *write_llamafactory(root / "llamafactory", lf_sft, lf_dpo),
               *write_hf(root / "hf", sft, dpo, test_entries)]
    counts = {"train_entries": len(train_entries), "test_entries": len(test_entries), "sft_rows": len(sft),
              "dpo_rows": len(dpo), "users": len(users),
              "rejected_equals_chosen": sum(r["chosen"][0]["content"] == r["rejected"][0]["content"] for r in dpo),
              "llamafactory": {**lf_stats.to_dict(), "sft_rows": len(lf_sft), "dpo_rows": len(lf_dpo)}}
    return written, counts


def synthesize(cfg: SynthConfig, prep: Preparation | None = None) -> dict[str, Any]:
    """Run the whole pipeline and write every output under ``cfg.out``; returns the manifest.

    ``cfg.out`` is checked before any work (:func:`~petool_lib.synthesis.exports.claim_out_dir`: writable; empty, a
    previous run, or ``cfg.overwrite``). With ``cfg.dry_run`` only the LLM plan (calls and tokens a model LLM would
    spend) is returned.
    """
    if cfg.dry_run:
        return {"dry_run": True, "llm_plan": plan_llm(cfg)}
    cfg.validate()
    out = claim_out_dir(cfg.out, cfg.overwrite)
    # the LLaMA-Factory export's tokenizer, loaded before any work so a bad --lf-tokenizer fails fast
    lf_tok = load_tokenizer(cfg.lf_tokenizer) if (cfg.lf_tokenizer and cfg.lf_cutoff_len) else None
    prep = prep or prepare(cfg)
    timings = dict(prep.timings)

    # 4-5. examples
    t = time.perf_counter()
    examples = _examples(cfg, prep)
    timings["examples"] = time.perf_counter() - t

    # 6. outputs
    t = time.perf_counter()
    written, counts = write_outputs(out, prep, examples, lf_tok)
    timings["write"] = time.perf_counter() - t

    train_entries = [ex.entry for ex in examples["train"]]
    test_entries = [ex.entry for ex in examples["test"]]
    all_ex = examples["train"] + examples["test"]
    alignment = sum(ex.user.tool_comb[0] == ex.aligned_provider for ex in all_ex) / max(1, len(all_ex))
    ref = prep.ref
    structure = {"synthesized_test": measure_structure(test_entries) if test_entries else None,
                 "synthesized_train": measure_structure(train_entries) if train_entries else None,
                 "official": measure_structure(ref.entries) if ref is not None else None}
    manifest: dict[str, Any] = {
        "seed": cfg.seed,
        "parameters": cfg.recorded(),
        **preparation_summary(prep),
        "preferences": {"noise": cfg.noise, "concentration": cfg.concentration,
                        "preferred_equals_noise_free_best": round(alignment, 4)},
        "counts": {"apis": len(prep.catalog.apis), "documented_apis": len(prep.catalog.documented),
                   "train_entries": counts["train_entries"], "test_entries": counts["test_entries"],
                   "sft_rows": counts["sft_rows"], "dpo_rows": counts["dpo_rows"], "users": counts["users"],
                   "categories": len(prep.catalog.categories()),
                   "rejected_equals_chosen": counts["rejected_equals_chosen"]},
        "structure": structure,
        "leakage": leakage_report(cfg, ref, prep.ref_reason, examples["train"], examples["test"]),
        "llamafactory": counts["llamafactory"],
    }
    manifest["files"] = written_hashes(out.root, written)  # only what this run wrote
    write_json(out.root / MANIFEST, manifest, indent=2)
    manifest["timings_s"] = {k: round(v, 2) for k, v in timings.items()}  # returned only: not in the hashed files
    return manifest


DATA_FILES = ("sft.jsonl", "dpo.jsonl", "test.json")  # what notebooks 03-05 read from <run>/data


def ensure_data(cfg: SynthConfig, log: Any = print) -> Path:
    """``cfg.out`` when notebook 02 has already written it (every file of :data:`DATA_FILES` there); otherwise run
    :func:`synthesize` with ``cfg`` (the same call notebook 02 makes) first. Lets notebook 03 start from a fresh
    runtime (Colab) without notebooks 01-02. Returns the data directory."""
    out = Path(cfg.out)
    missing = [f for f in DATA_FILES if not (out / f).is_file()]
    if not missing:
        log(f"training data: {out} (notebook 02's outputs)")
        return out
    log(f"{out}: no {', '.join(missing)} (notebook 02 has not run here): synthesizing them now "
        f"(tools={cfg.tools}, llm={cfg.llm}, train={cfg.train}, test={cfg.test}, holdout={cfg.holdout})")
    synthesize(cfg)
    return out
