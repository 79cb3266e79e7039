"""Build PEToolBench-style data from a tool corpus: tool understanding -> functional groups -> users' preferences ->
histories -> instructions -> SFT / DPO / test files in the official format (notebooks 01-02).

CLI::

    python -m petool_lib.synthesis.pipeline --tools sample|official|PATH --out DIR [--backend offline|openai|hf] [--seed N]
        [--train N] [--test N] [--holdout strict|shared-pool] [--test-set PATH] [--model NAME] [--dry-run]

``--train`` counts examples per setting: every synthesized entry carries all three settings' prompts, as the
official test entries do. Same inputs and seed give byte-identical files (no timestamps or absolute paths inside).
Each step is documented in its module: :mod:`~petool_lib.synthesis.catalog`, :mod:`~petool_lib.synthesis.understanding`,
:mod:`~petool_lib.synthesis.grouping`, :mod:`~petool_lib.synthesis.preferences`, :mod:`~petool_lib.synthesis.histories`,
:mod:`~petool_lib.synthesis.instructions`, :mod:`~petool_lib.synthesis.holdout`, :mod:`~petool_lib.synthesis.exports`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from .catalog import Api, Catalog, load_catalog
from ..core.data import SETTINGS, Entry
from .exports import (dpo_rows, file_hashes, sft_rows, write_hf, write_json, write_jsonl, write_llamafactory)
from .grouping import (DEFAULT_MAX_SIZE, Group, api_text, embed_texts, group_apis, nearest_neighbours,
                       pairwise_agreement, size_distribution)
from .histories import (HARD_DISTRACTORS, P_REJECTED_GROUP_API, PROMPT_HISTORY_LIMIT, call_item, measure_structure,
                        prompt_histories, sample_history_length, sample_rated0_count, sample_tool_comb_size,
                        weighted_choice)
from .holdout import HOLDOUTS, OfficialReference, load_reference
from .instructions import (Instruction, action_phrase, build_pools, mask_providers, normalize_text, render_instruction,
                           template_instruction)
from .instructions import plan_requests as plan_instruction_requests
from .llm import BACKENDS, LLMBackend, make_backend
from .preferences import PreferenceModel, User
from ..core.prompts import HistoryItem, render_prompt
from .understanding import derived_share, provider_profiles, understand
from .understanding import plan_requests as plan_understanding_requests

TRAIN_ID_OFFSET = 1_000_000
MAX_TOOL_COMB = 40  # official tool_comb sizes reach 37
HARD_POOL = 10


@dataclass
class SynthConfig:
    """Every knob of a synthesis run (recorded in the manifest, except the output/cache paths and progress)."""

    tools: str = "sample"
    out: str = "outputs/synth"
    backend: str = "offline"
    model: str | None = None
    seed: int = 0
    train: int = 3000
    test: int = 100
    holdout: str = "strict"
    test_set: str | None = None
    n_candidates: int = 10
    group_threshold: float = 0.77
    max_group_size: int = DEFAULT_MAX_SIZE
    test_group_fraction: float = 0.2
    instructions_per_api: int = 3
    noise: float = 0.3
    concentration: float = 0.5
    history_limit: int = PROMPT_HISTORY_LIMIT
    embedding: str = "auto"
    llm_limit: int | None = None
    llm_max_tokens: int | None = None
    concurrency: int = 4
    cache_dir: str | None = None
    progress: bool = True
    dry_run: bool = False

    def recorded(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("out", "cache_dir", "progress", "dry_run", "test_set"):
            d.pop(k)
        return d


@dataclass
class Example:
    """One synthesized entry with what the DPO rows and users.jsonl need."""

    entry: Entry
    user: User
    split: str
    rejected_call: dict[str, Any]
    rejected_provider: str
    aligned_provider: str
    full_history: list[HistoryItem] = field(default_factory=list)
    rejected_items: list[HistoryItem] = field(default_factory=list)


def _norm_param(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def map_parameters(params: dict[str, Any], src: Api, dst: Api) -> dict[str, Any]:
    """The same call on another provider's API: matching parameter names keep their values, the remaining required
    parameters take the remaining values in order (then their documented default)."""
    by_norm = {_norm_param(k): v for k, v in params.items()}
    used: set[str] = set()
    out: dict[str, Any] = {}
    for p in dst.parameters:
        key = _norm_param(p["name"])
        if key in by_norm:
            out[p["name"]] = by_norm[key]
            used.add(key)
    left = [v for k, v in by_norm.items() if k not in used]
    for p in dst.required_parameters:
        if p["name"] not in out:
            out[p["name"]] = left.pop(0) if left else p.get("default", "")
    order = [p["name"] for p in dst.parameters]
    return {k: out[k] for k in order if k in out}


class Synthesizer:
    """Holds the catalog, groups, pools and preference model; :meth:`example` builds one entry."""

    def __init__(self, cfg: SynthConfig, catalog: Catalog, groups: list[Group], pools: dict[str, list[Instruction]],
                 prefs: PreferenceModel, neighbours: dict[str, list[str]], ref: OfficialReference | None) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.groups = groups
        self.gindex = {g.gid: g for g in groups}
        self.pools = pools
        self.prefs = prefs
        self.neighbours = neighbours
        self.ref = ref
        self.api = catalog.by_name
        self.provider_apis = catalog.providers()
        self.group_of: dict[str, Group] = {m: g for g in groups for m in g.members}
        self.documented = [a.full_name for a in catalog.documented]
        strict = cfg.holdout == "strict" and ref is not None
        self.banned_train: set[str] = {a.full_name for a in catalog.apis if strict and ref.touches(a)}  # type: ignore[union-attr]
        self.official_queries = ref.queries if (strict and ref is not None) else set()

    # -- helpers ---------------------------------------------------------------------------------------------
    def record(self, api: Api) -> dict[str, Any]:
        """The official ``apis_same_func`` record, its ``Example`` being the API's first (allowed) instruction."""
        pool = self.pools.get(api.full_name) or []
        return api.same_func_record({"Scenario": pool[0].text, "Parameters": pool[0].parameters} if pool else None)

    def providers_of(self, g: Group) -> list[str]:
        return [self.api[m].provider for m in g.members]

    def _pick_instruction(self, rng: random.Random, api: Api, split: str, mask: Sequence[str] = (),
                          group: Sequence[Api] = ()) -> Instruction:
        """An instruction from the API's pool (not an official test query when training). For a query (``group``
        given) a template's action phrase is re-drawn from a random group member, and provider names are masked."""
        pool = list(self.pools.get(api.full_name) or [])
        rng.shuffle(pool)
        for ins in pool:
            text = ins.text
            if group and ins.origin == "template":
                text = render_instruction(action_phrase(rng.choice(list(group))), api, ins.parameters, rng)
            text = mask_providers(text, mask) if mask else text
            if split == "train" and normalize_text(text) in self.official_queries:
                continue
            return Instruction(text, ins.parameters, ins.origin)
        for _ in range(20):  # every pool item collides with an official query: generate a fresh one
            ins = template_instruction(api, rng, rng.choice(list(group)) if group else None)
            text = mask_providers(ins.text, mask) if mask else ins.text
            if normalize_text(text) not in self.official_queries:
                return Instruction(text, ins.parameters, ins.origin)
        raise RuntimeError(f"could not find an instruction for {api.full_name} that avoids the official queries")

    def _allowed(self, name: str, split: str) -> bool:
        return not (split == "train" and name in self.banned_train)

    def rejectable_apis(self, provider: str, split: str) -> list[Api]:
        """APIs of a provider that can be rated-0 calls (allowed in the split, with an instruction)."""
        return [a for a in self.provider_apis[provider] if self._allowed(a.full_name, split) and self.pools.get(a.full_name)]

    def full_rating_support(self, g: Group, split: str) -> bool:
        """Whatever provider a user prefers in ``g``, another member has >= 2 APIs for the rated-0 calls."""
        return sum(len(self.rejectable_apis(p, split)) >= 2 for p in self.providers_of(g)) >= 2

    # -- one entry ---------------------------------------------------------------------------------------------
    def example(self, split: str, index: int, target: Group, entry_id: int) -> Example:
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:{split}:{index}")
        nprng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, index])
        user = self.prefs.sample_user(nprng, f"{split}-{index}")
        providers = self.providers_of(target)
        ranked = self.prefs.rank(user, providers)
        best = ranked[0]
        t = self.api[target.members[providers.index(best)]]
        aligned = self.prefs.aligned(user, providers)
        non_pref = ranked[1:]
        memo: dict[str, str] = {target.gid: best}

        def pref_of(g: Group) -> str:
            if g.gid not in memo:
                memo[g.gid] = self.prefs.preferred(user, self.providers_of(g))
            return memo[g.gid]

        def usable(a: Api) -> bool:
            if a.full_name in target.members or not self._allowed(a.full_name, split) or not self.pools.get(a.full_name):
                return False
            g = self.group_of.get(a.full_name)
            return g is None or pref_of(g) == a.provider  # the user calls a grouped API only on its preferred provider

        # rated-0 provider: a non-preferred member of the group, preferably with two or more usable APIs
        def rejected_apis(p: str) -> list[Api]:
            return self.rejectable_apis(p, split)

        rich = [p for p in non_pref if len(rejected_apis(p)) >= 2]
        rej_provider = rng.choice(rich or non_pref)
        rej_member = self.api[target.members[providers.index(rej_provider)]]

        # preferred tools (tool_comb): the target's provider, then the preferred providers of other groups
        length = sample_history_length(rng)
        comb_size = sample_tool_comb_size(rng)
        comb = [best]
        pool_apis = [a for a in self.provider_apis[best] if usable(a)]
        others = [g for g in self.groups if g.gid != target.gid]
        rng.shuffle(others)
        for g in others:
            if (len(pool_apis) >= length and len(comb) >= comb_size) or len(comb) >= MAX_TOOL_COMB:
                break
            if any(not self._allowed(m, split) for m in g.members) and split == "train":
                continue
            p = pref_of(g)
            if p in comb or p in non_pref:
                continue
            comb.append(p)
            pool_apis.extend(a for a in self.provider_apis[p] if usable(a))
        rng.shuffle(pool_apis)
        chosen = pool_apis[:length]
        full = []
        for a in chosen:
            ins = self._pick_instruction(rng, a, split)
            full.append(call_item(ins.text, a.full_name, ins.parameters))

        # rated-0 calls: distinct APIs of the rejected provider (often including its member of the target group)
        n0 = sample_rated0_count(rng)
        rej_pool = rejected_apis(rej_provider)
        others_r = [a for a in rej_pool if a.full_name != rej_member.full_name]
        rng.shuffle(others_r)
        include_member = rej_member in rej_pool and (rng.random() < P_REJECTED_GROUP_API or len(others_r) < n0)
        rej_chosen = ([rej_member] if include_member else []) + others_r
        rej_chosen = rej_chosen[:n0]
        rng.shuffle(rej_chosen)
        rejected = []
        for a in rej_chosen:
            ins = self._pick_instruction(rng, a, split)
            rejected.append(call_item(ins.text, a.full_name, ins.parameters))

        # the query and its ground-truth call
        tool_names = [self.api[m].tool for m in target.members]
        q = self._pick_instruction(rng, t, split, mask=tool_names, group=[self.api[m] for m in target.members])
        gt = {"tool_name": t.full_name, "parameters": q.parameters}
        rej_call = {"tool_name": rej_member.full_name, "parameters": map_parameters(q.parameters, t, rej_member)}

        # candidates: the whole group + hard distractors (most similar APIs) + random ones, shuffled
        cands = list(target.members)
        n_total = max(cfg.n_candidates, len(cands))
        excluded = set(cands)
        hard = [n for n in self.neighbours.get(t.full_name, []) if n not in excluded and self._allowed(n, split)][:HARD_POOL]
        n_hard = min(len(hard), weighted_choice(rng, HARD_DISTRACTORS), n_total - len(cands))
        for n in rng.sample(hard, n_hard):
            cands.append(n)
            excluded.add(n)
        tries = 0
        while len(cands) < n_total and tries < 50 * n_total:
            tries += 1
            n = self.documented[rng.randrange(len(self.documented))]
            if n not in excluded and self._allowed(n, split):
                cands.append(n)
                excluded.add(n)
        rng.shuffle(cands)
        candidates = [self.api[n].candidate() for n in cands]

        hist = prompt_histories(full, rejected, rng, cfg.history_limit)
        prompts = {s: render_prompt(s, hist[s], candidates) for s in SETTINGS}
        user.tool_comb = comb
        user.preferred = {gid: p for gid, p in memo.items()}
        entry = Entry(
            entry_id=entry_id, query=q.text, prompts=prompts, candidates=candidates, ground_truth=gt,
            api_ground_truth=self.record(t), func=target.gid,
            same_func=[self.record(self.api[m]) for m in target.members],
            tool_comb=[self.api_provider_tool(p) for p in comb], num_tools_combined=len(comb), history_length=len(full),
        )
        return Example(entry, user, split, rej_call, rej_provider, aligned, full, rejected)

    def api_provider_tool(self, provider: str) -> str:
        return self.provider_apis[provider][0].tool


def _split_groups(cfg: SynthConfig, groups: list[Group], catalog: Catalog, ref: OfficialReference | None
                  ) -> tuple[list[Group], list[Group], list[Group]]:
    """(train targets, test targets, blocked) -- see :mod:`petool_lib.synthesis.holdout`."""
    eligible = [g for g in groups if all(catalog.by_name[m].documented for m in g.members)]
    blocked: list[Group] = []
    if cfg.holdout == "strict" and ref is not None:
        for g in eligible:
            hits = [m for m in g.members if ref.touches(catalog.by_name[m])]
            if hits:
                g.blocked_reason = ("contains an official ground-truth API" if any(m in ref.gt_apis for m in hits)
                                    else "shares APIs or docs with an official functional group")
                blocked.append(g)
    open_groups = [g for g in eligible if not g.blocked_reason]
    rng = random.Random(f"{cfg.seed}:groups")
    if blocked:
        test, train = blocked, open_groups
    else:
        order = list(open_groups)
        rng.shuffle(order)
        n_test = 0 if cfg.test <= 0 else max(1, math.ceil(cfg.test_group_fraction * len(order)))
        n_test = min(n_test, max(0, len(order) - 1))
        test, train = sorted(order[:n_test], key=lambda g: g.gid), sorted(order[n_test:], key=lambda g: g.gid)
    for g in train:
        g.split = "train"
    for g in test:
        g.split = "test"
    for g in groups:
        if not g.split:
            g.split = "unused"
    return train, test, blocked


def _targets(groups: list[Group], n: int, rng: random.Random) -> list[Group]:
    """``n`` target groups, cycling through seeded permutations so every group is used about equally."""
    out: list[Group] = []
    while len(out) < n and groups:
        perm = list(groups)
        rng.shuffle(perm)
        out.extend(perm)
    return out[:n]


def leakage_report(cfg: SynthConfig, ref: OfficialReference | None, reason: str, train: list[Example],
                   test: list[Example]) -> dict[str, Any]:
    """Overlaps between the training data and the official test set (measured on what was written)."""
    if ref is None:
        return {"holdout": cfg.holdout, "checked": False, "reason": reason}
    q_over = sum(normalize_text(ex.entry.query) in ref.queries for ex in train)
    h_over = sum(normalize_text(h.instruction) in ref.queries for ex in train for h in ex.full_history + ex.rejected_items)
    targets = {ex.entry.ground_truth["tool_name"] for ex in train}
    target_groups = {ex.entry.func: ex.entry.group_names for ex in train}
    gt_groups = sum(any(m in ref.gt_apis for m in names) for names in target_groups.values())
    touching = sum(any(m in ref.group_apis for m in names) for names in target_groups.values())
    anywhere: set[str] = set()
    for ex in train:
        anywhere.update(ex.entry.candidate_names)
        anywhere.update(h.tool_name for h in ex.full_history + ex.rejected_items)
        anywhere.add(ex.entry.ground_truth["tool_name"])
    synth_test_q = {normalize_text(ex.entry.query) for ex in test}
    return {
        "holdout": cfg.holdout, "checked": True,
        "train_queries_in_official_test": q_over,
        "train_history_instructions_in_official_test": h_over,
        "train_target_groups_with_official_gt_api": gt_groups,
        "train_target_groups_with_official_group_api": touching,
        "official_gt_apis_as_train_targets": sorted(targets & ref.gt_apis),
        "official_gt_apis_seen_anywhere_in_train": len(anywhere & ref.gt_apis),
        "official_group_apis_seen_anywhere_in_train": len(anywhere & ref.group_apis),
        "train_queries_in_synth_test": sum(normalize_text(ex.entry.query) in synth_test_q for ex in train),
    }


def _llm_plan(cfg: SynthConfig, backend: LLMBackend, catalog: Catalog) -> dict[str, Any]:
    reqs_u = plan_understanding_requests(catalog.documented, cfg.llm_limit)
    reqs_i = plan_instruction_requests(catalog.apis, cfg.instructions_per_api, cfg.llm_limit)
    pu, pi = backend.plan(reqs_u), backend.plan(reqs_i)
    total = {k: pu[k] + pi[k] for k in pu}
    return {"backend": backend.describe(), "tool_understanding": pu, "instructions": pi, "total": total}


@dataclass
class Preparation:
    """Steps 1-3 and the per-API part of step 5 (notebook 01): everything but the examples and the data files."""

    cfg: SynthConfig
    ref: OfficialReference | None
    ref_reason: str
    catalog: Catalog
    backend: LLMBackend
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
    synth: "Synthesizer"
    timings: dict[str, float] = field(default_factory=dict)


def _check(cfg: SynthConfig) -> None:
    if cfg.holdout not in HOLDOUTS:
        raise ValueError(f"unknown holdout {cfg.holdout!r}; expected one of {HOLDOUTS}")
    if cfg.backend not in BACKENDS:
        raise ValueError(f"unknown backend {cfg.backend!r}; expected one of {BACKENDS}")
    if cfg.train < 0 or cfg.test < 0:
        raise ValueError("--train and --test must be >= 0")


def _backend(cfg: SynthConfig) -> LLMBackend:
    kw: dict[str, Any] = {"cache_dir": cfg.cache_dir, "progress": cfg.progress}
    if cfg.llm_max_tokens is not None:
        kw["max_tokens"] = cfg.llm_max_tokens
    if cfg.backend == "openai":
        kw["concurrency"] = cfg.concurrency
    return make_backend(cfg.backend, cfg.model, **kw)


def plan_llm(cfg: SynthConfig) -> dict[str, Any]:
    """The dry run: how many model calls (not yet cached) and tokens a run would spend; calls nothing."""
    _check(cfg)
    ref, _ = load_reference(cfg.test_set, required=cfg.tools == "official")
    catalog = load_catalog(cfg.tools, ref.entries if ref is not None else None)
    backend = _backend(cfg)
    return {**_llm_plan(cfg, backend, catalog), "catalog": catalog.summary()}


def prepare(cfg: SynthConfig) -> Preparation:
    """Load the tools and the official reference, understand and group the tools, split the groups under the
    holdout, build the instruction pools and the preference model."""
    _check(cfg)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ref, ref_reason = load_reference(cfg.test_set, required=cfg.tools == "official")
    catalog = load_catalog(cfg.tools, ref.entries if ref is not None else None)
    if not catalog.documented:
        raise ValueError(f"no valid documented API in {cfg.tools!r} (skipped: {catalog.skip_counts()})")
    backend = _backend(cfg)
    plan = _llm_plan(cfg, backend, catalog)
    timings["load"] = time.perf_counter() - t0

    # 1. tool understanding
    t = time.perf_counter()
    understood, u_counts = understand(catalog.documented, backend, cfg.progress, cfg.llm_limit)
    timings["understanding"] = time.perf_counter() - t

    # 2. functional grouping
    t = time.perf_counter()
    docs = catalog.documented
    texts = [api_text(a, understood[a.full_name].functionality if understood[a.full_name].origin == "model" else None)
             for a in docs]
    emb_cache = Path(cfg.cache_dir) / "embeddings" if cfg.cache_dir else Path(backend.cache.root).parent / "embeddings"
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
    train_groups, test_groups, blocked = _split_groups(cfg, groups, catalog, ref)
    timings["grouping"] = time.perf_counter() - t

    # 3. preferences; 5. instruction pools (official test queries removed under the strict holdout)
    t = time.perf_counter()
    prefs = PreferenceModel(provider_profiles(docs, understood), cfg.seed, cfg.noise, cfg.concentration)
    pools, i_counts = build_pools(catalog.apis, backend, cfg.seed, cfg.instructions_per_api, cfg.progress, cfg.llm_limit)
    removed = 0
    if cfg.holdout == "strict" and ref is not None:
        for name, pool in pools.items():
            kept = [ins for ins in pool if normalize_text(ins.text) not in ref.queries]
            removed += len(pool) - len(kept)
            pools[name] = kept
    i_counts["removed_official_queries"] = removed
    synth = Synthesizer(cfg, catalog, groups, pools, prefs, neighbours, ref)
    # prefer target groups where every user's rated-0 tool can show >= 2 distinct calls (as in the official set)
    support = {}
    for split, tg in (("train", train_groups), ("test", test_groups)):
        full = [g for g in tg if synth.full_rating_support(g, split)]
        support[split] = {"groups": len(tg), "with_full_rating_support": len(full)}
        if full:
            for g in tg:
                if g not in full:
                    g.split = f"{g.split}-unused"
            tg[:] = full
    if cfg.train > 0 and not train_groups:
        raise ValueError("no functional group is available as a training target (all blocked by the holdout?)")
    if cfg.test > 0 and not test_groups:
        raise ValueError("no functional group is available as a test target")
    timings["pools"] = time.perf_counter() - t
    return Preparation(cfg, ref, ref_reason, catalog, backend, plan, understood, u_counts, embedding_backend, groups,
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
        "llm": {**prep.backend.describe(), "plan": prep.plan, "stats": prep.backend.stats.to_dict(),
                "tool_understanding": prep.u_counts, "instructions": prep.i_counts},
        "understanding": {"attribute_derived_share": derived_share(prep.understood)},
        "grouping": {"groups": len(prep.groups), "size_distribution": size_distribution(prep.groups),
                     "embedding_backend": prep.embedding_backend, "threshold": cfg.group_threshold,
                     "agreement_with_official_groups": prep.agreement,
                     "train_target_groups": len(prep.train_groups), "test_target_groups": len(prep.test_groups),
                     "blocked_groups": len(prep.blocked), "rating_support": prep.rating_support},
    }


def synthesize(cfg: SynthConfig, prep: Preparation | None = None) -> dict[str, Any]:
    """Run the whole pipeline and write every output under ``cfg.out``; returns the manifest.

    With ``cfg.dry_run`` only the LLM plan (calls and tokens a model backend would spend) is returned.
    """
    if cfg.dry_run:
        return {"dry_run": True, "llm_plan": plan_llm(cfg)}
    prep = prep or prepare(cfg)
    timings = dict(prep.timings)

    # 4-5. examples
    t = time.perf_counter()
    examples: dict[str, list[Example]] = {"test": [], "train": []}
    for split, n, tgroups, offset in (("test", cfg.test, prep.test_groups, 0),
                                      ("train", cfg.train, prep.train_groups, TRAIN_ID_OFFSET)):
        targets = _targets(tgroups, n, random.Random(f"{cfg.seed}:{split}:targets"))
        for i, g in enumerate(tqdm(targets, desc=f"{split} examples", disable=not cfg.progress)):
            examples[split].append(prep.synth.example(split, i, g, offset + i))
    timings["examples"] = time.perf_counter() - t

    # 6. outputs
    t = time.perf_counter()
    out = Path(cfg.out)
    if out.exists():
        for name in ("hf", "llamafactory"):
            shutil.rmtree(out / name, ignore_errors=True)
    write_tool_files(prep, out)
    train_entries = [ex.entry for ex in examples["train"]]
    test_entries = [ex.entry for ex in examples["test"]]
    users = []
    for split in ("train", "test"):
        for ex in examples[split]:
            users.append({**ex.user.to_dict(), "split": split, "entry_id": ex.entry.entry_id, "target_group": ex.entry.func,
                          "preferred_provider": ex.user.tool_comb[0], "aligned_provider": ex.aligned_provider,
                          "rejected_provider": ex.rejected_provider})
    write_jsonl(out / "users.jsonl", users)
    write_json(out / "test.json", [e.to_dict() for e in test_entries])
    sft = sft_rows(train_entries)
    rej = {ex.entry.entry_id: ex.rejected_call for ex in examples["train"]}
    dpo = dpo_rows(train_entries, rej)
    write_jsonl(out / "sft.jsonl", sft)
    write_jsonl(out / "dpo.jsonl", dpo)
    write_llamafactory(out / "llamafactory", sft, dpo)
    write_hf(out / "hf", sft, dpo, test_entries)
    timings["write"] = time.perf_counter() - t

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
                   "train_entries": len(train_entries), "test_entries": len(test_entries), "sft_rows": len(sft),
                   "dpo_rows": len(dpo), "users": len(users), "categories": len(prep.catalog.categories()),
                   "rejected_equals_chosen": sum(r["chosen"][0]["content"] == r["rejected"][0]["content"] for r in dpo)},
        "structure": structure,
        "leakage": leakage_report(cfg, ref, prep.ref_reason, examples["train"], examples["test"]),
    }
    manifest["files"] = file_hashes(out)
    write_json(out / "manifest.json", manifest, indent=2)
    manifest["timings_s"] = {k: round(v, 2) for k, v in timings.items()}  # returned only: not in the hashed files
    return manifest


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m petool_lib.synthesis.pipeline", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", default="sample", help="sample | official | path to a ToolBench-format tool directory")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--backend", default="offline", choices=BACKENDS)
    ap.add_argument("--model", default=None, help="model name (openai: default gpt-4o-mini; hf: smollm2 | tiny | path)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=3000, help="training examples per setting")
    ap.add_argument("--test", type=int, default=100, help="synthesized test entries")
    ap.add_argument("--holdout", default="strict", choices=HOLDOUTS)
    ap.add_argument("--test-set", default=None, help="official test set (file or directory); default: the data finder")
    ap.add_argument("--instructions-per-api", type=int, default=3)
    ap.add_argument("--group-threshold", type=float, default=SynthConfig.group_threshold)
    ap.add_argument("--noise", type=float, default=SynthConfig.noise)
    ap.add_argument("--embedding", default="auto", choices=("auto", "minilm", "tfidf"))
    ap.add_argument("--llm-limit", type=int, default=None, help="send at most this many APIs per step to the model")
    ap.add_argument("--llm-max-tokens", type=int, default=None, help="reply length cap (default 256 openai, 128 hf)")
    ap.add_argument("--concurrency", type=int, default=4, help="openai: parallel requests")
    ap.add_argument("--cache-dir", default=None, help="LLM reply cache (default $PETOOL_CACHE/llm)")
    ap.add_argument("--dry-run", action="store_true", help="print the expected model calls and tokens, write nothing")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = SynthConfig(tools=args.tools, out=args.out, backend=args.backend, model=args.model, seed=args.seed,
                      train=args.train, test=args.test, holdout=args.holdout, test_set=args.test_set,
                      instructions_per_api=args.instructions_per_api, group_threshold=args.group_threshold,
                      noise=args.noise, embedding=args.embedding, llm_limit=args.llm_limit, llm_max_tokens=args.llm_max_tokens,
                      concurrency=args.concurrency, cache_dir=args.cache_dir, progress=not args.no_progress,
                      dry_run=args.dry_run)
    try:
        m = synthesize(cfg)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.dry_run:
        print(json.dumps(m["llm_plan"], indent=2))
        return 0
    c = m["counts"]
    print(f"wrote {cfg.out}: {c['train_entries']} train entries x 3 settings ({c['sft_rows']} SFT / {c['dpo_rows']} DPO rows), "
          f"{c['test_entries']} test entries; {m['grouping']['groups']} groups {m['grouping']['size_distribution']}; "
          f"skipped inputs {m['skipped_inputs']['counts']}; timings {m['timings_s']}")
    lk = m["leakage"]
    if lk.get("checked"):
        print(f"holdout {lk['holdout']}: train queries in official test {lk['train_queries_in_official_test']}, "
              f"train target groups with official GT API {lk['train_target_groups_with_official_gt_api']}")
    else:
        print(f"holdout check skipped: {lk.get('reason')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
