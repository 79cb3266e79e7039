"""Steps 3-5 for one entry: a user, their histories, the query, its ground-truth call and the candidates.

:meth:`Synthesizer.example` builds one :class:`Example` from a target functional group, in named steps that all draw
from one RNG seeded by (seed, split, index), in a fixed order, so an example never depends on the others:

1. :meth:`~Synthesizer._draw` -- the user (latent preferences) and their preferred provider in the target group;
2. :meth:`~Synthesizer._rejected_provider` -- the non-preferred provider whose calls are rated 0;
3. :meth:`~Synthesizer._preferred_calls` -- the preferred tools (``tool_comb``) and the history of their calls;
4. :meth:`~Synthesizer._rejected_calls` -- the rated-0 calls;
5. :meth:`~Synthesizer._query` -- the query, its ground-truth call and the same call on the rejected provider;
6. :meth:`~Synthesizer._candidates` -- the group, hard distractors and random ones;

then the three settings' prompts (:func:`~petool_lib.synthesis.histories.prompt_histories`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..core.data import SETTINGS, Entry
from ..core.prompts import HistoryItem, render_prompt
from .catalog import Api, Catalog
from .grouping import Group
from .histories import (HARD_DISTRACTORS, P_REJECTED_GROUP_API, call_item, prompt_histories, sample_history_length,
                        sample_rated0_count, sample_tool_comb_size, weighted_choice)
from .holdout import OfficialReference
from .instructions import Instruction, action_phrase, mask_providers, normalize_text, render_instruction, template_instruction
from .preferences import PreferenceModel, User

if TYPE_CHECKING:
    from .config import SynthConfig

MAX_TOOL_COMB = 40  # official tool_comb sizes reach 37
HARD_POOL = 10  # most similar APIs a query's hard distractors are drawn from


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


@dataclass
class _Draw:
    """What the steps of one example share: its RNG, the user and the target group, and the provider the user
    calls in every group met so far (``chosen``, in the order met: it becomes the user's ``preferred``)."""

    split: str
    rng: random.Random
    user: User
    target: Group
    providers: list[str]  # the target group's providers, in member order
    best: str  # the user's preferred provider in the target group
    target_api: Api  # the target group's member on ``best``: the ground truth
    aligned: str  # the noise-free best-aligned provider (for the manifest's consistency measure)
    non_preferred: list[str]
    chosen: dict[str, str]


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

    def api_provider_tool(self, provider: str) -> str:
        return self.provider_apis[provider][0].tool

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
        """Entry ``entry_id``: the ``index``-th example of ``split``, with ``target`` as its target group."""
        d = self._draw(split, index, target)
        rej_provider, rej_member = self._rejected_provider(d)
        comb, full = self._preferred_calls(d)
        rejected = self._rejected_calls(d, rej_provider, rej_member)
        q, gt, rej_call = self._query(d, rej_member)
        candidates = self._candidates(d)
        hist = prompt_histories(full, rejected, d.rng, self.cfg.history_limit)
        prompts = {s: render_prompt(s, hist[s], candidates) for s in SETTINGS}
        d.user.tool_comb = comb
        d.user.preferred = {gid: p for gid, p in d.chosen.items()}
        entry = Entry(
            entry_id=entry_id, query=q.text, prompts=prompts, candidates=candidates, ground_truth=gt,
            api_ground_truth=self.record(d.target_api), func=target.gid,
            same_func=[self.record(self.api[m]) for m in target.members],
            tool_comb=[self.api_provider_tool(p) for p in comb], num_tools_combined=len(comb), history_length=len(full),
        )
        return Example(entry, d.user, split, rej_call, rej_provider, d.aligned, full, rejected)

    def _draw(self, split: str, index: int, target: Group) -> _Draw:
        """Step 1: the seeded RNG, a user, and the user's ranking of the target group's providers."""
        cfg = self.cfg
        rng = random.Random(f"{cfg.seed}:{split}:{index}")
        nprng = np.random.default_rng([cfg.seed, 0 if split == "train" else 1, index])
        user = self.prefs.sample_user(nprng, f"{split}-{index}")
        providers = self.providers_of(target)
        ranked = self.prefs.rank(user, providers)
        best = ranked[0]
        return _Draw(split=split, rng=rng, user=user, target=target, providers=providers, best=best,
                     target_api=self.api[target.members[providers.index(best)]],
                     aligned=self.prefs.aligned(user, providers), non_preferred=ranked[1:], chosen={target.gid: best})

    def _preferred_in(self, d: _Draw, g: Group) -> str:
        """The provider the user calls in group ``g`` (drawn once per group, then remembered)."""
        if g.gid not in d.chosen:
            d.chosen[g.gid] = self.prefs.preferred(d.user, self.providers_of(g))
        return d.chosen[g.gid]

    def _usable(self, d: _Draw, a: Api) -> bool:
        """Can ``a`` be a call in the user's preferred history?"""
        if a.full_name in d.target.members or not self._allowed(a.full_name, d.split) or not self.pools.get(a.full_name):
            return False
        g = self.group_of.get(a.full_name)
        return g is None or self._preferred_in(d, g) == a.provider  # a grouped API is called only on its preferred provider

    def _calls(self, d: _Draw, apis: Sequence[Api]) -> list[HistoryItem]:
        """One history call per API, each with an instruction from its pool."""
        items = []
        for a in apis:
            ins = self._pick_instruction(d.rng, a, d.split)
            items.append(call_item(ins.text, a.full_name, ins.parameters))
        return items

    def _rejected_provider(self, d: _Draw) -> tuple[str, Api]:
        """Step 2: the rated-0 provider, a non-preferred member of the group, preferably with two or more usable
        APIs; and its member of the target group."""
        rich = [p for p in d.non_preferred if len(self.rejectable_apis(p, d.split)) >= 2]
        provider = d.rng.choice(rich or d.non_preferred)
        return provider, self.api[d.target.members[d.providers.index(provider)]]

    def _preferred_calls(self, d: _Draw) -> tuple[list[str], list[HistoryItem]]:
        """Step 3: the preferred tools (``tool_comb``: the target's provider, then the preferred providers of other
        groups) and the full history of calls to them."""
        rng = d.rng
        length = sample_history_length(rng)
        comb_size = sample_tool_comb_size(rng)
        comb = [d.best]
        pool_apis = [a for a in self.provider_apis[d.best] if self._usable(d, a)]
        others = [g for g in self.groups if g.gid != d.target.gid]
        rng.shuffle(others)
        for g in others:
            if (len(pool_apis) >= length and len(comb) >= comb_size) or len(comb) >= MAX_TOOL_COMB:
                break
            if any(not self._allowed(m, d.split) for m in g.members) and d.split == "train":
                continue
            p = self._preferred_in(d, g)
            if p in comb or p in d.non_preferred:
                continue
            comb.append(p)
            pool_apis.extend(a for a in self.provider_apis[p] if self._usable(d, a))
        rng.shuffle(pool_apis)
        return comb, self._calls(d, pool_apis[:length])

    def _rejected_calls(self, d: _Draw, provider: str, member: Api) -> list[HistoryItem]:
        """Step 4: the rated-0 calls, distinct APIs of the rejected provider (often including its member of the
        target group)."""
        rng = d.rng
        n0 = sample_rated0_count(rng)
        rej_pool = self.rejectable_apis(provider, d.split)
        others = [a for a in rej_pool if a.full_name != member.full_name]
        rng.shuffle(others)
        include_member = member in rej_pool and (rng.random() < P_REJECTED_GROUP_API or len(others) < n0)
        chosen = (([member] if include_member else []) + others)[:n0]
        rng.shuffle(chosen)
        return self._calls(d, chosen)

    def _query(self, d: _Draw, rejected_member: Api) -> tuple[Instruction, dict[str, Any], dict[str, Any]]:
        """Step 5: the query (provider names masked), its ground-truth call, and the same call on the rejected
        provider's member (the DPO row's rejected answer)."""
        t = d.target_api
        group = [self.api[m] for m in d.target.members]
        q = self._pick_instruction(d.rng, t, d.split, mask=[a.tool for a in group], group=group)
        gt = {"tool_name": t.full_name, "parameters": q.parameters}
        rej_call = {"tool_name": rejected_member.full_name, "parameters": map_parameters(q.parameters, t, rejected_member)}
        return q, gt, rej_call

    def _candidates(self, d: _Draw) -> list[dict[str, Any]]:
        """Step 6: the whole group + hard distractors (most similar APIs) + random ones, shuffled."""
        rng, split = d.rng, d.split
        cands = list(d.target.members)
        n_total = max(self.cfg.n_candidates, len(cands))
        excluded = set(cands)
        hard = [n for n in self.neighbours.get(d.target_api.full_name, [])
                if n not in excluded and self._allowed(n, split)][:HARD_POOL]
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
        return [self.api[n].candidate() for n in cands]
